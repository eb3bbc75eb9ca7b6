"""Regenerate docs/panel.png: the dashboard over a small made-up history, in headless Chromium.

    python -m web.tools.screenshot                 # writes docs/panel.png
    python -m web.tools.screenshot --out /tmp/p.png --width 1280 --height 900

The history is a dozen packages over three runs, written with `History.record` as a run
writes it; the panel runs in uvicorn on a free loopback port and Debian's Chromium (driven by
Playwright, no browser download) loads it. Nothing outside a temporary folder is touched but
the output file.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from refinery_lib.history import History, new_event
from refinery_lib.models import node_key
from refinery_lib.retry_queue import RetryQueue, RetryRequest

from ..app import create_app
from ..settings import PanelSettings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--hide-scrollbars"]
DOCS_PNG = Path(__file__).resolve().parents[2] / "docs" / "panel.png"
CHARTS = ("outcomes", "durations", "failure-rate", "variants", "queue")
DAY = 86400.0

LXML_ERROR = ("src/lxml/includes/etree_defs.h:14:10: fatal error: libxml/xmlversion.h: "
              "No such file or directory")
RUST_ERROR = "error: can't find Rust compiler"
#: (package, version, seconds, first error or "" for a success, variant); a failure's log
#: holds the error among ordinary build output
BUILDS = [
    ("numpy", "1.26.4", 1380.0, "", "isolated"),
    ("grpcio", "1.62.1", 3310.0, "", "isolated"),
    ("pyyaml", "6.0.1", 24.0, "", "isolated"),
    ("markupsafe", "2.1.5", 6.5, "", "isolated"),
    ("psutil", "5.9.8", 15.0, "", "no-isolation"),
    ("lxml", "5.2.1", 48.0, LXML_ERROR, "isolated"),
    ("cryptography", "42.0.5", 35.0, RUST_ERROR, "isolated"),
    ("pillow", "10.3.0", 92.0, "The headers or library files could not be found for jpeg,",
     "no-isolation"),
]


def _build(cache: Path, name: str, version: str, seconds: float, error: str, ts: float,
           attempt: int = 1, variant: str = "isolated") -> list[dict]:
    """An attempt and its outcome, and the attempt's log, as the build step writes them."""
    log = cache / "logs" / f"{node_key(name, version)}-attempt{attempt}-{variant}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"$ python -m build --wheel {name}-{version}.tar.gz", "running build_ext",
             f"building '{name}._ext' extension"]
    lines += [error, "error: command '/usr/bin/gcc' failed with exit code 1"] if error else [
        f"Successfully built {name}-{version}-cp311-cp311-linux_s390x.whl"]
    log.write_text("\n".join(lines) + "\n")
    ok = not error
    meta = {"variant": variant, "attempt": attempt, "log_path": str(log), "duration": seconds,
            "exit_code": 0 if ok else 1, "builder": "local", "max_rss_mb": 300.0}
    detail = "succeeded" if ok else f"build of {name}-{version}.tar.gz failed (exit 1)"
    outcome = new_event(name, version, "built" if ok else "failed",
                        f"built {name}-{version}.whl" if ok else detail, **meta)
    return [dict(new_event(name, version, "attempt", detail, **meta), ts=ts),
            dict(outcome, ts=ts + 1)]


def demo_history(cache: Path, now: float | None = None) -> History:
    """Three runs over four days: builds, failures (one fixed by a retry), reuse, a cache hit,
    a fetched wheel and a missing dependency; two retries queued."""
    now = now or time.time()
    history = History(cache / "history.db")
    first = now - 4 * DAY
    events: list[dict] = []
    for i, (name, version, seconds, error, variant) in enumerate(BUILDS):
        events += _build(cache, name, version, seconds, error, first + 60 * i, variant=variant)
    events += _build(cache, "pandas", "2.2.2", 240.0,
                     "numpy/__init__.py: ModuleNotFoundError: No module named 'numpy'",
                     first + 600)
    events += [dict(new_event("requests", "2.31.0", "reused", "py3-none-any wheel reused"),
                    ts=first + 5),
               dict(new_event("six", "1.16.0", "reused", "py2.py3-none-any wheel reused"),
                    ts=first + 6),
               dict(new_event("urllib3", "2.2.1", "fetched", "target wheel on the index"),
                    ts=first + 7)]
    history.record(events, "run-1", "cp311", "manylinux2014_s390x")

    second = now - 2 * DAY
    events = _build(cache, "pandas", "2.2.2", 2050.0, "", second, attempt=2,
                    variant="no-isolation")
    events += _build(cache, "lxml", "5.2.1", 51.0, LXML_ERROR, second + 3000, attempt=2,
                     variant="no-isolation")
    events += [dict(new_event("charset-normalizer", "3.3.2", "cached", "built earlier",
                              duration=18.0), ts=second + 10),
               dict(new_event("ghost-dep", "", "missing", "no distribution for ghost-dep>=2",
                              needed_by=["pillow==10.3.0"]), ts=second + 11)]
    history.record(events, "run-2", "cp311", "manylinux2014_s390x")

    third = now - 3 * 3600
    events = [dict(new_event("requests", "2.31.0", "reused", "reused"), ts=third),
              dict(new_event("numpy", "1.26.4", "cached", "built earlier", duration=1380.0),
                   ts=third + 1)]
    events += _build(cache, "cryptography", "42.0.5", 33.0, RUST_ERROR, third + 30,
                     attempt=2)
    history.record(events, "run-3", "cp311", "manylinux2014_s390x")

    queue = RetryQueue(cache / "retry_queue.json")
    queue.add(RetryRequest("lxml", "5.2.1", system_packages=["libxml2-devel", "libxslt-devel"]))
    queue.add(RetryRequest("cryptography", "42.0.5", system_packages=["rust", "cargo"]))
    return history


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(settings: PanelSettings) -> Iterator[str]:
    """The panel on a free loopback port for the duration of the block; yields its URL."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):  # bounded wait for the socket
            if server.started:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def capture(out: Path, width: int = 1280, height: int = 900, timeout_ms: int = 30_000) -> Path:
    """Make the demo history, serve it, and save the dashboard's first screen to `out`."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="panel-shot-") as tmp:
        cache = Path(tmp) / "cache"
        demo_history(cache)
        settings = PanelSettings(db_path=cache / "history.db",
                                 queue_path=cache / "retry_queue.json", logs_dir=cache / "logs",
                                 package_manager="dnf")
        with serve(settings) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(url + "/")
                for key in CHARTS:
                    page.wait_for_selector(f'#chart-{key}[data-rendered="1"] svg.main-svg',
                                           timeout=timeout_ms)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
            finally:
                browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DOCS_PNG)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    out = capture(args.out, args.width, args.height)
    print(f"{out}: {out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
