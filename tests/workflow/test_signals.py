"""Signals to refinery's own pid, and processes that escape a build, in real runs.

`kill -INT <pid>` or `kill -9 <pid>` reaches refinery alone (not its process group, as a
terminal's Ctrl-C would): Snakemake and the build must stop all the same, and the next run
must not be refused. A build whose setup.py leaves a setsid()'d grandchild running must not
leave it behind, even when the build succeeds (checked in the rerun after SIGINT: each run
costs some 15 s, so they do double duty).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import build_tools_wheels, run_refinery
from tests.fixtures.processes import live_processes
from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index
from tests.workflow.test_scheduling import refinery_args

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]

FOREIGN = "cp311-cp311-manylinux2014_s390x"
#: in the command line of the grandchild the escaping build leaves running
MARKER = f"refinery-escapee-{uuid.uuid4().hex}"


def sleeper_setup(gate: Path, started: Path) -> str:
    """setup.py of a build that, while `gate` exists, says it started and sleeps 60 s."""
    return (
        "import os, sys, time\n"
        f"if 'bdist_wheel' in sys.argv and os.path.exists({str(gate)!r}):\n"
        f"    open({str(started)!r}, 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "from setuptools import Extension, setup\n"
        "setup(ext_modules=[Extension('sleeper._speed', ['sleeper/_speed.c'])])\n"
    )


ESCAPER_SETUP = (
    "import subprocess, sys\n"
    "if 'bdist_wheel' in sys.argv:\n"
    "    # a daemon: a session of its own, stdio closed; it outlives the build unless contained\n"
    "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', "
    f"{MARKER!r}], start_new_session=True, stdin=subprocess.DEVNULL, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "from setuptools import Extension, setup\n"
    "setup(ext_modules=[Extension('escaper._speed', ['escaper/_speed.c'])])\n"
)


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> tuple[Path, Path]:
    """(gate, started): the sleeper sleeps while `gate` exists and writes `started` then."""
    folder = tmp_path_factory.mktemp("signals-gate")
    return folder / "gate", folder / "started"


@pytest.fixture(scope="module")
def signals_index(tmp_path_factory, gate) -> str:
    """A file:// PEP 503 index of `sleeper` and `escaper` (C projects with the setup.py
    above) and setuptools."""
    root = tmp_path_factory.mktemp("signals-index")
    files = root / "files"
    for name, setup in (("sleeper", sleeper_setup(*gate)), ("escaper", ESCAPER_SETUP)):
        project = write_project(root / "projects", name, "1.0")
        (project / "setup.py").write_text(setup)
        build_sdist(project, files)
    for wheel in build_tools_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "simple")
    return (root / "simple").as_uri()


def processes_under(root: Path) -> dict[int, str]:
    """Live processes working in `root` (cwd or command line under it), or the escapee."""
    return live_processes(roots=(root,), markers=(MARKER,))


def wait_gone(root: Path, limit: float = 30) -> dict[int, str]:
    """Poll until nothing works in `root` (a wait loop, not a timing check)."""
    deadline = time.monotonic() + limit
    while (left := processes_under(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def no_strays(tmp_path):
    yield
    for pid in processes_under(tmp_path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_sleeper_run(tmp: Path, index: str, env: dict, gate: tuple[Path, Path]):
    """refinery in a session of its own, building `sleeper`; returns once its setup.py is
    asleep mid-build. It starts with SIGINT ignored, as a shell without job control starts
    `refinery ... &` (and as many CI runners start everything): the stop must still reach
    Snakemake (tests/workflow/test_resume.py stops runs started with SIGINT at its default)."""
    gate_file, started = gate
    gate_file.touch()
    started.unlink(missing_ok=True)
    make_wheel(tmp / "in", "sleeper", "1.0", FOREIGN)
    log = open(tmp / "run.log", "w")  # noqa: SIM115 - closed by the caller's wait
    sigint_ignored = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                      "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")
    proc = subprocess.Popen(
        [sys.executable, "-c", sigint_ignored, "-m", "refinery_lib.cli",
         *refinery_args(tmp, index, "--jobs", "1")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 300
    begun = time.monotonic()
    while not started.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the build never started (exit {proc.poll()}):\n"
                                 + (tmp / "run.log").read_text())
        time.sleep(0.1)
    print(f"the build started {time.monotonic() - begun:.1f} s after refinery")
    return proc


def rerun_lands(tmp: Path, index: str, env: dict, gate: tuple[Path, Path],
                *extra: str) -> None:
    """The same command again (no sleep this time, `extra` packages added to the input):
    not refused, and the wheels land."""
    gate[0].unlink(missing_ok=True)
    for name in extra:
        make_wheel(tmp / "in", name, "1.0", FOREIGN)
    started = time.monotonic()
    res = run_refinery(refinery_args(tmp, index, "--jobs", "1"), env=env)
    print(f"rerun took {time.monotonic() - started:.1f} s")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "another refinery run" not in res.stderr
    landed = sorted(p.name.split("-")[0] for p in (tmp / "out").glob("*.whl"))
    assert landed == sorted(["sleeper", *extra])


def test_sigint_to_refinery_alone_stops_snakemake_and_the_build(
    tmp_path, signals_index, isolated_pip_env, gate, no_strays
):
    proc = start_sleeper_run(tmp_path, signals_index, isolated_pip_env, gate)
    try:
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)  # the pid only: not its group
        rc = proc.wait(timeout=120)  # the build sleeps 60 s: this is well before it ends
        print(f"refinery exited {time.monotonic() - sent:.1f} s after SIGINT")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = (tmp_path / "run.log").read_text()
    assert rc == 130, log
    assert wait_gone(tmp_path) == {}
    outcomes = tmp_path / "cache" / "workflow" / "results" / "outcomes"
    assert not outcomes.is_dir() or not list(outcomes.glob("sleeper-*.json"))
    assert not list((tmp_path / "out").glob("*.whl"))
    (build_log,) = (tmp_path / "cache" / "logs").glob("sleeper-1.0-attempt1-*.log")
    assert "Successfully built" not in build_log.read_text()
    # Snakemake stopped as on Ctrl-C: it removed its own lock
    locks = tmp_path / "cache" / "workflow" / ".snakemake" / "locks"
    assert not locks.is_dir() or not any(locks.iterdir())
    # the rerun also builds `escaper`, whose setup.py leaves a daemon (a setsid()'d
    # grandchild) running: the build is contained, so the daemon ends with it
    rerun_lands(tmp_path, signals_index, isolated_pip_env, gate, "escaper")
    log = next((tmp_path / "cache" / "logs").glob("escaper-1.0-attempt1-*.log")).read_text()
    assert "Successfully built" in log
    assert processes_under(tmp_path) == {}, "a process a build started outlived it"


def test_sigkill_to_refinery_takes_snakemake_and_the_build_with_it(
    tmp_path, signals_index, isolated_pip_env, gate, no_strays
):
    proc = start_sleeper_run(tmp_path, signals_index, isolated_pip_env, gate)
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert wait_gone(tmp_path) == {}
    print(f"everything gone {time.monotonic() - sent:.1f} s after SIGKILL")
    assert not list((tmp_path / "out").glob("*.whl"))
    rerun_lands(tmp_path, signals_index, isolated_pip_env, gate)
