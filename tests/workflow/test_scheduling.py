"""Build order from history (`--schedule`), seen in the start times of real builds.

A module-local PEP 503 index (file://) of four C projects whose wheel builds sleep for
different times; the history is seeded with those durations, and `--jobs 1` runs one build at
a time, so the start order of the builds is the order Snakemake's priorities chose.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
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
def sleepy_index(tmp_path_factory) -> str:
    return make_index(
        tmp_path_factory.mktemp("sched-index"),
        {name: {"build_sleep": sleep} for name, sleep in SLEEPS.items()},
    )


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
