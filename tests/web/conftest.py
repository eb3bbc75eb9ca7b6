"""A cache folder shaped like one after two refinery runs, and the panel pointed at it.

The history is written with History.record from events shaped as the workflow writes them
(attempt + outcome pairs with variant, attempt, log_path, duration, exit_code, hints), over
several days, with the attempt logs on disk where the build puts them.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
import yaml
from fastapi.testclient import TestClient

from refinery_lib.history import History, new_event
from refinery_lib.models import node_key
from web.app import create_app
from web.deps import get_settings
from web.settings import PanelSettings

DAY = 86400.0
XSS = "<script>alert('pwned')</script>"
HINT_CATALOG = [
    {"id": "missing-openblas", "category": "ai-ml", "patterns": [r"openblas.*not found"],
     "dnf": ["openblas-devel"], "apt": ["libopenblas-dev"], "steps": [], "note": "BLAS headers"},
    {"id": "c-syntax-error", "category": "compiler", "patterns": [r"error: expected|is not C"],
     "dnf": ["gcc"], "apt": ["gcc"], "steps": [["gcc", "--version"]],
     "note": "the C source does not compile with this compiler"},
    {"id": "rust-toolchain", "category": "rust", "patterns": [r"can't find Rust compiler"],
     "dnf": ["rust", "cargo"], "apt": ["rustc", "cargo"], "steps": [], "note": "needs Rust"},
]
RECORDED_HINT = {
    "id": "c-syntax-error", "category": "compiler", "line_no": 2,
    "line": "broken/_speed.c:9: error: expected ';' this is not C", "dnf": ["gcc"],
    "apt": ["gcc"], "steps": [["gcc", "--version"]], "note": "the C source does not compile",
}


def _build(cache: Path, name: str, version: str, ok: bool, ts: float, attempt: int = 1,
           variant: str = "isolated", duration: float = 12.5, hints=None, log_text=""):
    """attempt + built/failed events, as build.py writes them, and the attempt's log file."""
    log = cache / "logs" / f"{node_key(name, version)}-attempt{attempt}-{variant}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(log_text or f"$ python -m build {name}\nbuilding {name} {version}\n")
    meta = {"variant": variant, "attempt": attempt, "log_path": str(log), "duration": duration,
            "exit_code": 0 if ok else 1, "builder": "local", "max_rss_mb": 120.5}
    if hints is not None:
        meta["hints"] = hints
    detail = "succeeded" if ok else f"build of {name}-{version}.tar.gz failed (exit 1)"
    outcome = "built" if ok else "failed"
    events = [new_event(name, version, "attempt", detail, **meta),
              new_event(name, version, outcome,
                        f"built {name}-{version}.whl" if ok else detail, **meta)]
    for i, ev in enumerate(events):
        ev["ts"] = ts + i
    return events


def make_history(cache: Path, now: float | None = None) -> History:
    now = now or time.time()
    h = History(cache / "history.db")
    run1 = now - 3 * DAY
    events = [
        dict(new_event("hello-pure", "1.0", "reused", "py3-none-any wheel reused"), ts=run1),
        dict(new_event("purehelper", "2.0", "fetched", "target wheel on the index"), ts=run1),
        dict(new_event("ghostpkg", "", "missing", "no distribution for ghostpkg>=1",
                       needed_by=["needs-ghost==1.0"]), ts=run1),
        dict(new_event("garbage-1.0-py3-none-any.whl", "", "invalid", "not a zip"), ts=run1),
    ]
    events += _build(cache, "cfast", "1.0", True, run1 + 10, duration=20.0)
    events += _build(cache, "cdep", "0.5", True, run1 + 40, duration=8.0,
                     variant="no-isolation")
    events += _build(cache, "broken", "0.1", False, run1 + 60, duration=3.0,
                     hints=[RECORDED_HINT],
                     log_text="$ python -m build broken\nbroken/_speed.c:9: error: expected ';'"
                     " this is not C\nerror: command 'gcc' failed\n")
    events += _build(cache, "evil-pkg", "6.6", False, run1 + 80, duration=1.0,
                     hints=[{**RECORDED_HINT, "id": XSS, "line": XSS, "note": XSS}],
                     log_text=f"{XSS}\n")
    events[-1]["detail"] = events[-2]["detail"] = f"failed: {XSS}"
    h.record(events, "run-1", "cp311", "manylinux2014_s390x")
    run2 = now - 1 * DAY
    events = [dict(new_event("hello-pure", "1.0", "reused", "reused"), ts=run2),
              dict(new_event("cfast", "1.0", "cached", "built earlier", variant="isolated",
                             duration=20.0), ts=run2 + 1)]
    # a second failing attempt of broken, no hints recorded: the catalog is matched instead
    events += _build(cache, "broken", "0.1", False, run2 + 5, attempt=2, duration=4.0,
                     variant="no-isolation", hints=[],
                     log_text="compiling\nbroken/_speed.c:9: error: expected ';'\n")
    events += _build(cache, "slowpoke", "3.0", True, run2 + 30, duration=2400.0)
    h.record(events, "run-2", "cp311", "manylinux2014_s390x")
    return h


@pytest.fixture
def cache(tmp_path) -> Path:
    folder = tmp_path / "cache"
    make_history(folder)
    hints = tmp_path / "hints.yaml"
    hints.write_text(yaml.safe_dump(HINT_CATALOG))
    return folder


@pytest.fixture
def settings(cache, tmp_path) -> PanelSettings:
    return PanelSettings(db_path=cache / "history.db", queue_path=cache / "retry_queue.json",
                         logs_dir=cache / "logs", hints_path=tmp_path / "hints.yaml",
                         package_manager="dnf")


BASE_URL = "http://127.0.0.1"
TOKEN = "s3cret-token-for-tests"  # 16+ characters: shorter ones are refused


def client_for(settings: PanelSettings, base_url: str = BASE_URL,
               origin: bool = True) -> TestClient:
    """An app built with nonsense settings, then swapped through the dependency, as tests do.

    It talks to the panel as its own pages do: on loopback, with the panel's Origin header
    (browsers send one with every POST); `origin=False` for a client that sends none.
    """
    app = create_app(PanelSettings(Path("/nonexistent/h.db"), Path("/nonexistent/q.json"),
                                   Path("/nonexistent/logs")))
    app.dependency_overrides[get_settings] = lambda: settings
    return TestClient(app, base_url=base_url, headers={"Origin": base_url} if origin else {})


@pytest.fixture
def client(settings) -> TestClient:
    return client_for(settings)


@pytest.fixture
def token_settings(settings) -> PanelSettings:
    return replace(settings, token=TOKEN)


def csrf_of(page: str) -> str:
    """The CSRF token a page's form carries (the hidden csrf_token input)."""
    m = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert m, "the page has no form with a CSRF token"
    return m.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture
def browser():
    """Debian's Chromium driven by Playwright (no browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/install.d/30-browser.sh)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class ServerThread:
    """A real uvicorn on 127.0.0.1 in a thread, stopped by the test."""

    def __init__(self, app, log_level: str = "warning"):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level,
                                timeout_graceful_shutdown=2, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        for _ in range(200):  # bounded wait for the socket to listen
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
