"""The build-environment warm-up against real builds: a requirement the warm-up cannot know
(named by the backend at build time) or cannot download costs no attempt.

A module-local index: `dynreq` names `helperdyn` (a pure wheel on the index) only through
setuptools' `setup_requires`, so the warm-up covers its static `setuptools>=61` and its build
first finds `helperdyn` missing in the shared environment, then offline, and is run again
online within the same attempt.
`dynpeer` has the same static requirements, so the two share the environment (one needed by a
single build is made by that build). `needs-nowhere` names a build requirement no index has:
the warm-up names it and goes on.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from refinery_lib.attempts import variant_stats
from tests.conftest import build_tools_wheels, run_refinery
from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index

pytestmark = pytest.mark.slow

FOREIGN = "cp311-cp311-manylinux2014_s390x"
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="module")
def dyn_index(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("buildenv-index")
    files = root / "files"
    build_sdist(write_project(root / "p", "dynreq", "1.0", setup_requires=("helperdyn",)), files)
    # the same static build requirements as dynreq: the two share one environment
    build_sdist(write_project(root / "p", "dynpeer", "1.0", c_ext=False), files)
    build_sdist(write_project(root / "p", "needs-nowhere", "1.0", c_ext=False,
                              build_requires=("nowhere-pkg",)), files)
    make_wheel(files, "helperdyn", "1.0", "py3-none-any")
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    return (root / "simple").as_uri()


def _refine(tmp_path: Path, index: str, env: dict, *extra: str):
    return run_refinery(
        [
            "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--python", PY, "--platform-tag", "native",
            "--index-url", index, *extra,
        ],
        env=env,
    )


def attempt_events(history_db: Path, package: str) -> list[dict]:
    con = sqlite3.connect(history_db)
    try:
        rows = con.execute(
            "SELECT metadata FROM events WHERE package = ? AND status = 'attempt'", (package,)
        ).fetchall()
    finally:
        con.close()
    return [json.loads(m) for (m,) in rows]


def test_a_dynamic_requirement_is_retried_online_without_costing_an_attempt(
    tmp_path, dyn_index, isolated_pip_env
):
    for name in ("dynreq", "dynpeer", "needs-nowhere"):
        make_wheel(tmp_path / "in", name, "1.0", FOREIGN)
    cache = tmp_path / "cache"
    res = _refine(
        tmp_path, dyn_index, isolated_pip_env,
        "--max-attempts", "2", "--attempt-backoff-base", "0.01", "--attempt-backoff-max", "0.02",
    )
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    status = {e["name"]: e for e in manifest["entries"]}
    assert status["dynreq"]["status"] == "built", res.stdout + res.stderr

    # the warm-up covered dynreq's static requirements and named what it could not download
    record = json.loads((cache / "workflow" / "results" / "buildenv" / "warm.json").read_text())
    assert record["sdists"]["dynreq-1.0"]["covered"] is True
    nowhere = record["sdists"]["needs_nowhere-1.0"]
    assert nowhere["covered"] is False and "nowhere-pkg" in nowhere["problem"]

    # dynreq: one attempt, which counts once and succeeded: its shared environment lacked
    # helperdyn (the backend names it at build time), so did the offline one, online it built
    (event,) = attempt_events(cache / "history.db", "dynreq")
    assert event["ok"] is True and event["attempt"] == 1 and event["build_env"] == "online"
    assert event["shared_missing"] == ["helperdyn"]
    (peer,) = attempt_events(cache / "history.db", "dynpeer")
    assert peer["ok"] is True and peer["build_env"] == "shared"
    assert event["offline_missing"] == ["helperdyn"]
    assert record["sdists"]["dynreq-1.0"]["venv"]
    shared_log = Path(event["shared_log"])
    assert shared_log.parent == cache / "logs" / "shared"
    assert "the shared build environment lacks: helperdyn" in shared_log.read_text()
    assert status["dynreq"]["metadata"]["attempts"] == 1
    assert status["dynreq"]["metadata"]["build_deps"]["helperdyn"] == "1.0"
    assert variant_stats(cache / "history.db", "dynreq") == {"isolated": (1, 1)}
    # the offline try's log is kept aside: not an attempt log, so no hint and no requeue
    logs = sorted(p.name for p in (cache / "logs").glob("dynreq-*.log"))
    assert logs == ["dynreq-1.0-attempt1-isolated.log"]
    offline_log = Path(event["offline_log"])
    assert offline_log.parent == cache / "logs" / "offline"
    assert "No matching distribution found for helperdyn" in offline_log.read_text()
    attempt_log = (cache / "logs" / logs[0]).read_text()
    assert "No matching distribution" not in attempt_log
    assert "lacked helperdyn" in attempt_log
    missing_deps = cache / "workflow" / "results" / "missing_deps" / "missing_deps.json"
    assert "dynreq" not in (json.loads(missing_deps.read_text()) if missing_deps.exists() else {})

    # needs-nowhere was not warmed: its attempts ran online as before and failed for real
    assert status["needs-nowhere"]["status"] == "failed"
    events = attempt_events(cache / "history.db", "needs-nowhere")
    assert events and all(e["build_env"] == "online" for e in events)
    assert res.returncode == 1


def test_an_sdist_that_cannot_be_downloaded_blocks_no_other_build(
    tmp_path, isolated_pip_env
):
    """The warm-up downloads every sdist before any build: one that fails its sha256 check is
    named there and by its own fetch job, and the other package is still warmed and built."""
    root = tmp_path / "index"
    files = root / "files"
    build_sdist(write_project(root / "p", "goodsrc", "1.0"), files)
    bad = build_sdist(write_project(root / "p", "badsum", "1.0", c_ext=False), files)
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    with open(bad, "ab") as fh:  # the index still promises the original sha256
        fh.write(b"tampered")
    for name in ("goodsrc", "badsum"):
        make_wheel(tmp_path / "in", name, "1.0", FOREIGN)
    cache = tmp_path / "cache"
    res = _refine(tmp_path, (root / "simple").as_uri(), isolated_pip_env)
    assert res.returncode == 1, res.stdout + res.stderr
    status = {e["name"]: e for e in json.loads((tmp_path / "out" / "manifest.json").read_text())[
        "entries"]}
    assert status["goodsrc"]["status"] == "built", res.stdout + res.stderr
    assert status["badsum"]["status"] == "failed"
    assert "cannot fetch the sdist of badsum 1.0" in status["badsum"]["detail"]
    assert "sha256" in status["badsum"]["detail"]
    record = json.loads((cache / "workflow" / "results" / "buildenv" / "warm.json").read_text())
    assert record["sdists"]["goodsrc-1.0"]["covered"] is True
    (problem,) = [p for p in record["problems"] if p["key"] == "badsum-1.0"]
    assert "sha256" in problem["problem"]
    (event,) = attempt_events(cache / "history.db", "goodsrc")
    # the only build: its own environment, made offline from the warm-up's wheels
    assert event["build_env"] == "offline"
