"""Shared fixtures: a real PEP 503 index of tiny C projects served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index

REPO = Path(__file__).resolve().parent.parent
TOOLS_CACHE = REPO / "tests" / ".cache"

# (name, version, kwargs) of every sdist on the test index
PROJECTS = [
    ("cfast", "1.0", {}),
    ("cfast", "1.1", {"bias": 0}),
    ("cdep", "0.5", {"requires": ("cfast>=1.0",)}),
    ("purehelper", "2.0", {"c_ext": False}),
    ("broken", "0.1", {"broken": True}),
    # resilience fixtures: each fails in one specific, real way
    ("needs-variant", "1.0", {"extra_include": '#ifndef REFINERY_VARIANT_OK\n'
                              '#error "needs the with-flag variant"\n#endif'}),
    ("sleepy", "1.0", {"build_sleep": 120}),
    ("flaky", "1.0", {"flaky": True}),
    ("missing-header", "1.0", {"extra_include": "#include <refinery_missing.h>"}),
    ("needs-zstd", "1.0", {"extra_include": "#include <zstd.h>"}),
    ("flip", "1.0", {"broken": True}),
    ("flip", "1.1", {}),
    ("flip", "2.0", {}),
    ("needs-build-dep", "1.0", {"build_requires": ("cfast",)}),
    # imports a build tool it does not declare; the tool itself is on the index (as an sdist)
    ("imports-build-tool", "1.0", {"setup_imports": ("some_build_tool",)}),
    ("some-build-tool", "1.0", {"c_ext": False}),
    # reproducibility fixtures: the build time in the wheel, honouring SOURCE_DATE_EPOCH or not
    ("sde-pure", "1.0", {"c_ext": False, "embed_time": "sde"}),
    ("clocky", "1.0", {"c_ext": False, "embed_time": "clock"}),
]
#: setuptools on the test index: the newest, and an older one that replay tests pin
OLD_SETUPTOOLS = "70.3.0"


def build_tools_wheels() -> list[Path]:
    """setuptools wheels (the newest and an older one), so isolated builds find their backend
    on the local index and replay tests can pin the older one."""
    TOOLS_CACHE.mkdir(parents=True, exist_ok=True)
    for old, spec in ((True, f"setuptools=={OLD_SETUPTOOLS}"), (False, "setuptools>70.3")):
        have = [
            p for p in TOOLS_CACHE.glob("setuptools-*.whl") if (OLD_SETUPTOOLS in p.name) == old
        ]
        if not have:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                 "--dest", str(TOOLS_CACHE), spec],
                check=True, capture_output=True,
            )
    return sorted(TOOLS_CACHE.glob("setuptools-*.whl"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - keep test output clean
        pass


@pytest.fixture(scope="session")
def index_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("index")
    files = root / "files"
    projects = root / "projects"
    for name, version, kwargs in PROJECTS:
        build_sdist(write_project(projects, name, version, **kwargs), files)
    make_wheel(files, "purehelper", "2.0", "py3-none-any")
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    return root


@pytest.fixture(scope="session")
def index_url(index_root) -> str:
    handler = functools.partial(_QuietHandler, directory=str(index_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()


@pytest.fixture
def isolated_pip_env(monkeypatch):
    """Only the test's own index: no machine-wide pip config or find-links."""
    for key in list(os.environ):
        if key.startswith("PIP_") and key != "PIP_CERT":
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return dict(os.environ)


def run_refinery(args: list[str], env: dict | None = None, cwd: Path | None = None):
    """`refinery` as a user runs it: a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "refinery_lib.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=1200,
    )


@pytest.fixture
def sql_trace(monkeypatch):
    """`sql_trace(module, ...)`: every SQL statement those modules' sqlite3.connect runs."""
    statements: list[str] = []
    real_connect = sqlite3.connect

    def traced(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        con.set_trace_callback(statements.append)
        return con

    def install(*modules):
        for module in modules:
            monkeypatch.setattr(module.sqlite3, "connect", traced)
        return statements

    return install
