"""An interrupted run resumes and loses nothing: SIGKILL or SIGINT mid-build, rerun, compare.

The wheelhouse has two quick C builds, one slow one, a build that depends on the slow one and a
reused pure wheel. The run is stopped while the slow build is inside its backend; rerunning the
same command must finish with the same wheels (same names, same sha256) as an uninterrupted run
in another cache and output, and with a manifest and history that miss nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refinery_lib.history import History
from tests.conftest import run_refinery
from tests.fixtures.processes import kill_all, live_processes
from tests.fixtures.projects import make_wheel
from tests.workflow.test_scheduling import make_index, make_wheelhouse, refinery_args

pytestmark = pytest.mark.slow

SLOW_SLEEP = 10.0  # seconds the slow build sleeps inside `setup.py bdist_wheel`
PROJECTS = {
    "quick-a": {},
    "quick-b": {},
    "slowpoke": {"build_sleep": SLOW_SLEEP},
    "waiter": {"requires": ("slowpoke>=1.0",)},
}
BUILT = sorted(PROJECTS)
REUSED = "pure-thing"
SLOW_LOG = "slowpoke-1.0-attempt1-isolated.log"


@pytest.fixture(scope="module")
def resume_index(tmp_path_factory) -> str:
    return make_index(tmp_path_factory.mktemp("resume-index"), PROJECTS)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """Made once: zip timestamps differ between calls, and a reused wheel is copied as is."""
    folder = make_wheelhouse(tmp_path_factory.mktemp("resume-wheelhouse"), BUILT)
    make_wheel(folder, REUSED, "1.0", "py3-none-any")
    return folder


def prepare(tmp: Path, wheelhouse: Path) -> None:
    shutil.copytree(wheelhouse, tmp / "in")


def args_for(tmp: Path, index_url: str) -> list[str]:
    return refinery_args(tmp, index_url, "--jobs", "2")


def wheels(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.whl"))}


def manifest_entries(out: Path) -> dict[str, tuple]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {e["name"]: (e["version"], e["status"], e.get("sha256")) for e in manifest["entries"]}


def stray_processes(root: Path) -> dict[int, str]:
    """Processes still working in `root` (cwd or command line under it): orphans of a kill."""
    return live_processes(roots=(root,))


def run_processes(root: Path) -> dict[int, str]:
    """refinery, Snakemake and its jobs working on `root` (builds left out)."""
    return {pid: what for pid, what in stray_processes(root).items()
            if "refinery_lib.cli" in what or "snakemake" in what}


def kill_strays(root: Path) -> None:
    kill_all(stray_processes(root))


@pytest.fixture
def cleanup_strays(tmp_path):
    yield
    kill_strays(tmp_path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, resume_index, wheelhouse) -> dict:
    """The uninterrupted run, in its own cache and output."""
    tmp = tmp_path_factory.mktemp("resume-reference")
    prepare(tmp, wheelhouse)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    res = run_refinery(args_for(tmp, resume_index), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return {"wheels": wheels(tmp / "out"), "entries": manifest_entries(tmp / "out")}


def start_and_interrupt(tmp: Path, index_url: str, env: dict, sig: int) -> tuple[int, float]:
    """Start refinery in its own process group, wait until the slow build runs its backend,
    send `sig` to the whole group; returns refinery's exit code and how long it took to exit."""
    log = open(tmp / "interrupted.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "refinery_lib.cli", *args_for(tmp, index_url)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    slow_log = tmp / "cache" / "logs" / SLOW_LOG
    deadline = time.monotonic() + 180
    try:
        # "Building wheel" is printed by `python -m build` just before the backend (and its
        # sleep) starts: the slow build is then surely mid-way
        while not (slow_log.exists() and "Building wheel" in slow_log.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the slow build never started (exit {proc.poll()}):\n"
                    + (tmp / "interrupted.log").read_text()
                )
            time.sleep(0.2)
        time.sleep(1.0)
        sent = time.monotonic()
        os.killpg(proc.pid, sig)
        rc = proc.wait(timeout=120)
        return rc, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def check_resumed(tmp: Path, index_url: str, env: dict, reference: dict) -> None:
    outcomes = tmp / "cache" / "workflow" / "results" / "outcomes"
    assert not (outcomes / "slowpoke-1.0.json").exists(), "the slow build was not interrupted"
    assert not (outcomes / "waiter-1.0.json").exists()
    finished_before = sorted(p.name for p in outcomes.glob("*.json")) if outcomes.is_dir() else []

    res = run_refinery(args_for(tmp, index_url), env=env)
    assert res.returncode == 0, res.stdout + res.stderr

    # identical output: wheel names and sha256, manifest entries
    got = wheels(tmp / "out")
    if got != reference["wheels"]:
        differing = sorted(n for n in got.keys() | reference["wheels"].keys()
                           if got.get(n) != reference["wheels"].get(n))
        raise AssertionError(f"resumed output differs from the reference, first: {differing[0]}"
                             f"\nresumed {got}\nreference {reference['wheels']}")
    assert manifest_entries(tmp / "out") == reference["entries"]
    assert set(reference["entries"]) == {*BUILT, REUSED}

    # nothing lost, nothing done twice: every package landed once in the history, each build
    # with one attempt (builds finished before the interruption were kept, not redone), and
    # no package was recorded as a failed build because it was interrupted (that would make
    # --skip-known-failures skip it and count as a failure in the panel)
    con = sqlite3.connect(tmp / "cache" / "history.db")
    try:
        landed = con.execute(
            "SELECT package, status FROM events WHERE status IN ('built', 'reused', 'cached')"
            " ORDER BY package"
        ).fetchall()
        attempts = dict(con.execute(
            "SELECT package, COUNT(*) FROM events WHERE status = 'attempt' GROUP BY package"
        ).fetchall())
        failed = con.execute(
            "SELECT package, detail FROM events WHERE status = 'failed'"
        ).fetchall()
    finally:
        con.close()
    assert landed == sorted([(n, "built") for n in BUILT] + [(REUSED, "reused")])
    assert attempts == dict.fromkeys(BUILT, 1)
    assert failed == [], f"interrupted builds recorded as failures: {failed}"
    history = History(tmp / "cache" / "history.db")
    assert {n: history.last_status(n) for n in BUILT} == dict.fromkeys(BUILT, "built")
    for name in finished_before:
        assert (outcomes / name).exists()
    # the resumed slow build's log is its own: one clean build, nothing written into it by
    # the interrupted one (which, left running, fails once its folder is replaced)
    text = (tmp / "cache" / "logs" / SLOW_LOG).read_text(errors="replace")
    assert text.count("Building wheel") == 1, text
    assert text.count("Successfully built") == 1, text
    assert "Traceback" not in text and "ERROR" not in text, text
    assert stray_processes(tmp) == {}


def test_sigkill_mid_build_resumes_with_identical_output(
    tmp_path, resume_index, wheelhouse, isolated_pip_env, reference, cleanup_strays
):
    prepare(tmp_path, wheelhouse)
    rc, _ = start_and_interrupt(tmp_path, resume_index, isolated_pip_env, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    # the run itself is gone (refinery, Snakemake, its jobs); a build, in a session of its
    # own, may outlive it: the rerun must end it before it reuses the build folder
    deadline = time.monotonic() + 10
    while run_processes(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_processes(tmp_path) == {}
    check_resumed(tmp_path, resume_index, isolated_pip_env, reference)


def test_sigint_mid_build_stops_promptly_and_resumes(
    tmp_path, resume_index, wheelhouse, isolated_pip_env, reference, cleanup_strays
):
    prepare(tmp_path, wheelhouse)
    rc, took = start_and_interrupt(tmp_path, resume_index, isolated_pip_env, signal.SIGINT)
    print(f"refinery exited {rc} {took:.1f} s after SIGINT")
    assert rc != 0
    # promptly: well before the slow build would have finished on its own
    assert took < SLOW_SLEEP, f"refinery took {took:.1f} s to stop after SIGINT"
    # Snakemake itself got the interrupt and shut down cleanly: it removed its lock
    locks = tmp_path / "cache" / "workflow" / ".snakemake" / "locks"
    assert not locks.is_dir() or not any(locks.iterdir()), sorted(locks.iterdir())
    deadline = time.monotonic() + 10
    while stray_processes(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stray_processes(tmp_path) == {}
    check_resumed(tmp_path, resume_index, isolated_pip_env, reference)
