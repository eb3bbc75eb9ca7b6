"""Build order from history (`--schedule`) in the start times of real builds; the warm-up
(`prefetch`) target and the build environment it makes once for builds to share.

A module-local PEP 503 index of four C projects whose wheel builds sleep for different times
(as file:// for the order tests, over HTTP with a request log for the warm-up test). The
order tests seed the history with those durations and run `--jobs 1`: one build at a time, so
the start order of the builds is the order Snakemake's priorities chose.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from refinery_lib.history import History, new_event
from tests.conftest import build_tools_wheels, run_refinery
from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index

pytestmark = pytest.mark.slow

FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"

# input (= plan, = fifo) order is alphabetical; durations differ from it in both directions
SLEEPS = {"alpha": 1.0, "bravo": 0.0, "charlie": 1.5, "delta": 0.5}
BY_INPUT = sorted(SLEEPS)
SHORTEST_FIRST = sorted(SLEEPS, key=SLEEPS.get)


def make_index(root: Path, projects: dict[str, dict]) -> str:
    """A static PEP 503 index of `projects` (name -> write_project kwargs, version 1.0) plus
    setuptools as a wheel; returns its file:// URL."""
    files = root / "files"
    for name, kwargs in projects.items():
        build_sdist(write_project(root / "projects", name, "1.0", **kwargs), files)
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    return (root / "simple").as_uri()


def make_wheelhouse(folder: Path, names) -> Path:
    """Foreign-platform wheels of `names`: each one must be rebuilt from its sdist here."""
    for name in names:
        make_wheel(folder, name, "1.0", FOREIGN)
    return folder


def refinery_args(tmp: Path, index_url: str, *extra: str) -> list[str]:
    return [
        "--input", str(tmp / "in"), "--output", str(tmp / "out"), "--cache", str(tmp / "cache"),
        "--python", PY, "--platform-tag", "native", "--index-url", index_url,
        "--attempt-backoff-base", "0.01", "--attempt-backoff-max", "0.02", *extra,
    ]


def build_starts(history_db: Path) -> list[tuple[str, float]]:
    """(package, start) of every build attempt, in start order. An attempt event is written
    when the attempt ends, with its duration: start = ts - duration."""
    con = sqlite3.connect(history_db)
    try:
        rows = con.execute(
            "SELECT package, ts - json_extract(metadata, '$.duration') AS start FROM events"
            " WHERE status = 'attempt' ORDER BY start"
        ).fetchall()
    finally:
        con.close()
    return [(pkg, start) for pkg, start in rows]


@pytest.fixture(scope="module")
def sleepy_index_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sched-index")
    make_index(root, {name: {"build_sleep": sleep} for name, sleep in SLEEPS.items()})
    return root


@pytest.fixture(scope="module")
def sleepy_index(sleepy_index_root) -> str:
    return (sleepy_index_root / "simple").as_uri()


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]  # set per server

    def do_GET(self):  # noqa: N802 - the http.server API
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served_index(sleepy_index_root):
    """The same index over HTTP, with every requested path logged (cleared by the test)."""
    requests: list[str] = []
    handler = type("Handler", (_LoggingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(sleepy_index_root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple", requests
    server.shutdown()


def seed_history(path: Path, durations: dict[str, float]) -> None:
    """Two earlier builds per package, as the workflow records them (built, with a duration)."""
    events = []
    for name, duration in durations.items():
        for factor in (0.9, 1.1):
            events.append(new_event(name, "1.0", "built", "seeded",
                                    duration=round(duration * factor, 3), variant="isolated"))
    History(path).record(events, run_id="seed")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("shortest-first", SHORTEST_FIRST),
        ("fifo", BY_INPUT),
        ("longest-first", SHORTEST_FIRST[::-1]),
    ],
)
def test_schedule_orders_real_builds(tmp_path, sleepy_index, isolated_pip_env, mode, expected):
    make_wheelhouse(tmp_path / "in", BY_INPUT)
    # seeded durations are 10 s per second of sleep: far apart, same order as the real ones
    seed_history(tmp_path / "cache" / "history.db", {n: 1 + 10 * s for n, s in SLEEPS.items()})
    res = run_refinery(
        refinery_args(tmp_path, sleepy_index, "--jobs", "1", "--schedule", mode,
                      "--max-attempts", "1"),
        env=isolated_pip_env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {e["name"]: e["status"] for e in manifest["entries"]} == dict.fromkeys(
        SLEEPS, "built"
    )
    starts = build_starts(tmp_path / "cache" / "history.db")
    assert [pkg for pkg, _ in starts] == expected, starts
    # one build at a time (--jobs 1): each started after the previous one ended
    con = sqlite3.connect(tmp_path / "cache" / "history.db")
    ends = dict(con.execute("SELECT package, ts FROM events WHERE status = 'attempt'"))
    con.close()
    for (before, _), (after, start) in zip(starts, starts[1:], strict=False):
        assert ends[before] <= start, (before, after, starts)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def _sdist_gets(requests: list[str]) -> list[str]:
    return [r for r in requests if r.split("#")[0].endswith(".tar.gz")]


def test_prefetch_warms_the_cache_before_a_parallel_run(tmp_path, served_index, isolated_pip_env):
    """`refinery ... -- prefetch` (the workflow's warm-up target) downloads every sdist and
    every build requirement (as wheels) once, makes their one build environment and builds
    nothing; the `--jobs 2` run after it asks the index for nothing at all (no sdist, no
    setuptools page or file) and makes no environment: its four builds share the one made.
    Their wheels are byte for byte those of builds that each make their own environment."""
    index_url, requests = served_index
    make_wheelhouse(tmp_path / "in", BY_INPUT)
    requests.clear()
    res = run_refinery(refinery_args(tmp_path, index_url, "--jobs", "2", "--", "prefetch"),
                       env=isolated_pip_env)
    assert res.returncode == 0, res.stdout + res.stderr
    downloads = tmp_path / "cache" / "downloads"
    # and the digest of each download, kept to check the cached file before each use
    assert sorted(_files(downloads)) == [".sha256", *(f"{n}-1.0.tar.gz" for n in BY_INPUT)]
    assert sorted(_files(downloads / ".sha256")) == [f"{n}-1.0.tar.gz" for n in BY_INPUT]
    assert sorted(_sdist_gets(requests)) == [f"/files/{n}-1.0.tar.gz" for n in BY_INPUT]
    # the build requirements of all four (setuptools>=61), fetched once, as a wheel
    warm_folder = tmp_path / "cache" / "buildenv" / "wheels"
    warmed = sorted(p.name for p in warm_folder.iterdir())
    assert len(warmed) == 1 and warmed[0].startswith("setuptools-"), warmed
    assert [r for r in requests if r.split("#")[0].endswith(".whl")] == [f"/files/{warmed[0]}"]
    record = json.loads(
        (tmp_path / "cache" / "workflow" / "results" / "buildenv" / "warm.json").read_text()
    )
    assert record["covered"] == record["total"] == 4 and record["problems"] == []
    assert record["requirements"] == ["setuptools>=61"]
    # one environment for the four (same requirements, pins and interpreter), made by prefetch
    venvs = tmp_path / "cache" / "buildenv" / "venvs"
    (venv,) = [p for p in venvs.iterdir() if not p.name.startswith(".")]
    (made,) = record["venvs"]
    assert made["created"] is True and made["path"] == str(venv) and len(made["sdists"]) == 4
    assert {e["venv"] for e in record["sdists"].values()} == {str(venv)}
    setuptools_version = warmed[0].split("-")[1]
    assert made["packages"] == {"setuptools": setuptools_version}
    made_files = _files(venv)
    # a warm-up, not a run: nothing built, no manifest claiming failures, no failed history
    assert not (tmp_path / "cache" / "logs").exists() or not any(
        (tmp_path / "cache" / "logs").iterdir()
    )
    assert not (tmp_path / "out" / "manifest.json").exists()
    history = tmp_path / "cache" / "history.db"
    if history.exists():
        con = sqlite3.connect(history)
        statuses = [s for (s,) in con.execute("SELECT DISTINCT status FROM events")]
        con.close()
        assert "failed" not in statuses

    before = _files(downloads)
    requests.clear()
    res = run_refinery(refinery_args(tmp_path, index_url, "--jobs", "2"), env=isolated_pip_env)
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {e["name"]: e["status"] for e in manifest["entries"]} == dict.fromkeys(SLEEPS, "built")
    # the same files, untouched (inode and mtime), and nothing asked of the index at all
    assert _files(downloads) == before
    assert requests == []
    con = sqlite3.connect(history)
    envs = dict(con.execute(
        "SELECT package, json_extract(metadata, '$.build_env') FROM events"
        " WHERE status = 'attempt'"
    ))
    con.close()
    assert envs == dict.fromkeys(SLEEPS, "shared")
    # still that one environment, untouched, and no build made another
    assert [p for p in venvs.iterdir() if not p.name.startswith(".")] == [venv]
    assert _files(venv) == made_files
    for name in SLEEPS:
        text = (tmp_path / "cache" / "logs" / f"{name}-1.0-attempt1-isolated.log").read_text()
        assert f"Using the shared build environment {venv}" in text
        assert "Creating isolated environment" not in text and "build-env-" not in text
    # the environment's versions are the build dependencies the manifest records (replay)
    for entry in manifest["entries"]:
        assert entry["metadata"]["build_deps"] == {"setuptools": setuptools_version}

    # the same four built each in its own environment (offline from the warm folder), in a
    # cold cache: the same wheels, byte for byte
    own = tmp_path / "own-envs.yaml"
    own.write_text("build:\n  shared_build_env: false\n")
    args = refinery_args(tmp_path, index_url, "--jobs", "2", "--config", str(own))
    args[args.index("--cache") + 1] = str(tmp_path / "cache-own")
    args[args.index("--output") + 1] = str(tmp_path / "out-own")
    res = run_refinery(args, env=isolated_pip_env)
    assert res.returncode == 0, res.stdout + res.stderr
    own_manifest = json.loads((tmp_path / "out-own" / "manifest.json").read_text())
    assert not (tmp_path / "cache-own" / "buildenv" / "venvs").exists()
    con = sqlite3.connect(tmp_path / "cache-own" / "history.db")
    own_envs = dict(con.execute(
        "SELECT package, json_extract(metadata, '$.build_env') FROM events"
        " WHERE status = 'attempt'"
    ))
    con.close()
    assert own_envs == dict.fromkeys(SLEEPS, "offline")
    log = (tmp_path / "cache-own" / "logs" / "alpha-1.0-attempt1-isolated.log").read_text()
    assert "Creating isolated environment" in log
    shas = {e["name"]: (e["wheel"], e["sha256"]) for e in manifest["entries"]}
    own_shas = {e["name"]: (e["wheel"], e["sha256"]) for e in own_manifest["entries"]}
    assert own_shas == shas
    assert {e["name"]: e["metadata"]["build_deps"] for e in own_manifest["entries"]} == {
        e["name"]: e["metadata"]["build_deps"] for e in manifest["entries"]
    }
