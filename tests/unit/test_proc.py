"""proc.run's containment (contain.py) and signal forwarding, with real processes.

Every test names its processes with a unique marker in their argv and looks for it in /proc:
nothing a command started may be left once run() has returned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from refinery_lib import proc
from refinery_lib.errors import CommandError
from tests.fixtures.processes import kill_all, live_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

# the command: starts a `sleep 300` stand-in that escapes (a double fork, or a child that
# calls setsid()), waits until it runs, then succeeds, fails or hangs; the escapee has its
# stdio on /dev/null as a daemon does, so only containment can end it
ESCAPER = textwrap.dedent("""\
    import os, sys, time
    marker, how, outcome, ready = sys.argv[1:5]
    sleeper = [sys.executable, "-c",
               "import sys, time; open(sys.argv[1], 'w').close(); time.sleep(300)",
               ready, marker]

    def daemon():
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execv(sys.executable, sleeper)

    if how == "double-fork":
        if os.fork() == 0:
            if os.fork() == 0:
                daemon()
            os._exit(0)
        os.wait()
    else:
        if os.fork() == 0:
            os.setsid()
            daemon()
    while not os.path.exists(ready):
        time.sleep(0.01)
    print("escapee running", flush=True)
    if outcome == "hang":
        time.sleep(300)
    sys.exit(0 if outcome == "success" else 3)
""")


def with_marker(marker: str) -> dict[int, str]:
    """Live processes whose command line holds `marker`."""
    return live_processes(markers=(marker,))


def kill_marked(marker: str) -> None:
    kill_all(with_marker(marker))


@pytest.fixture
def marker():
    mark = f"refinery-test-{uuid.uuid4().hex}"
    yield mark
    kill_marked(mark)  # whatever a failing test left


CASES = [(logged, outcome, how) for logged in (True, False) for outcome in ("success", "failure")
         for how in ("double-fork", "setsid")]
# a timeout costs its wait: once per way of reading the output, with the escape that leaves
# the process group (a double fork stays in it, and the group is killed on a timeout anyway)
CASES += [(True, "hang", "setsid"), (False, "hang", "setsid")]


@pytest.mark.parametrize(("logged", "outcome", "how"), CASES,
                         ids=["-".join(("log" if c[0] else "capture", *c[1:])) for c in CASES])
def test_nothing_a_command_started_outlives_it(tmp_path, marker, how, outcome, logged):
    ready = tmp_path / "ready"
    script = tmp_path / "escaper.py"
    script.write_text(ESCAPER)
    log = tmp_path / "cmd.log" if logged else None
    res = proc.run([sys.executable, str(script), marker, how, outcome, str(ready)],
                   log_path=log, check=False, timeout=3 if outcome == "hang" else 120)
    assert ready.exists(), "the escapee never started"
    assert with_marker(marker) == {}
    assert res.timed_out is (outcome == "hang")
    assert res.returncode == {"success": 0, "failure": 3, "hang": -signal.SIGKILL}[outcome]
    text = log.read_text() if log else res.output
    assert "escapee running" in text
    if log:
        assert text.startswith(f"$ {sys.executable} {script} {marker} ")


def test_a_command_that_cannot_start_is_reported_as_before(tmp_path):
    log = tmp_path / "cmd.log"
    with pytest.raises(CommandError) as err:
        proc.run(["refinery-no-such-program", "x"], log_path=log)
    assert err.value.returncode is None
    assert "No such file or directory" in str(err.value.output)
    assert log.read_text().splitlines() == [
        "$ refinery-no-such-program x",
        "cannot start: [Errno 2] No such file or directory: 'refinery-no-such-program'",
    ]


def test_the_command_gets_its_environment_fds_and_signal_state(tmp_path):
    """The supervisor between them changes nothing the command sees: environment, working
    directory, passed fds, ignored and blocked signals (as a direct subprocess has them)."""
    read_fd, write_fd = os.pipe()
    script = ("grep -E '^Sig(Ign|Blk)' /proc/self/status; echo \"$REFINERY_T\"; pwd;"
              "if [ -n \"$1\" ]; then printf 'fd ok' > /dev/fd/$1; fi")
    argv = ["sh", "-c", script, "sh", str(write_fd)]
    env = {**os.environ, "REFINERY_T": "seen"}
    try:
        res = proc.run(argv, cwd=tmp_path, env=env, pass_fds=[write_fd])
        os.close(write_fd)
        assert os.read(read_fd, 100) == b"fd ok"
    finally:
        os.close(read_fd)
    direct = subprocess.run(argv[:3], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.output.splitlines() == direct.stdout.splitlines()
    assert res.output.splitlines()[-2:] == ["seen", str(tmp_path)]


def test_a_command_stopped_by_sigint_never_inherits_it_ignored(tmp_path):
    """A runner started with SIGINT ignored (`refinery ... &` in a script, a CI runner without
    job control) still stops a forward_signals command with SIGINT: that command starts with
    SIGINT at its default; other commands keep it ignored, as subprocess does."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    runner = textwrap.dedent(f"""\
        import signal, sys
        from refinery_lib import proc
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for forward in (True, False):
            res = proc.run([sys.executable, "-c", {probe!r}], forward_signals=forward)
            print(forward, res.output.strip())
        print("runner", signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(proc.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True,
                         env=env, check=True, cwd=tmp_path).stdout.split("\n")
    assert out[:3] == ["True True", "False False", "runner True"], out


# a runner like refinery: runs a child with forward_signals and reports how it ended; the
# child counts the SIGINTs it gets and exits after INTERRUPT_GRACE_CHILD seconds of cleanup
RUNNER = textwrap.dedent("""\
    import sys, threading, time
    from refinery_lib import proc
    child, grace = sys.argv[1:-1], float(sys.argv[-1])
    # another thread, as refinery has (progress, log copier): when the process dies, the
    # kernel sends the death signal once per thread that the child is handed to
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
    try:
        res = proc.run(child, forward_signals=True, interrupt_grace=grace, check=False,
                       capture=False)
        print("exit", res.returncode, flush=True)
    except proc.Interrupted as exc:
        print("interrupted", exc.signum, flush=True)
        sys.exit(128 + exc.signum)
""")
CHILD = textwrap.dedent("""\
    import os, signal, sys, time
    marker, ready, counts, stubborn = sys.argv[1:5]
    # a job of the child, in its process group as Snakemake's are, deaf to SIGINT: only the
    # supervisor's sweep ends it
    job = ready + ".job"
    os.posix_spawn(sys.executable, [
        sys.executable, "-c",
        "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN);"
        "open(sys.argv[1], 'w').close(); time.sleep(300)", job, marker], os.environ)
    while not os.path.exists(job):
        time.sleep(0.01)

    def on_int(*_):
        with open(counts, "a") as fh:
            fh.write("INT\\n")
        if stubborn != "stubborn":
            time.sleep(0.5)  # some cleanup; a second SIGINT would count again meanwhile
            with open(counts, "a") as fh:
                fh.write("DONE\\n")
            sys.exit(130)

    signal.signal(signal.SIGINT, on_int)
    open(ready, "w").close()
    while True:
        time.sleep(0.05)
""")


def start_runner(tmp_path: Path, marker: str, *, stubborn: bool = False, grace: float = 30,
                 session: bool = True):
    (tmp_path / "runner.py").write_text(RUNNER)
    (tmp_path / "child.py").write_text(CHILD)
    ready, counts = tmp_path / "ready", tmp_path / "counts"
    env = {**os.environ, "PYTHONPATH": str(Path(proc.__file__).parents[1])}
    runner = subprocess.Popen(
        [sys.executable, str(tmp_path / "runner.py"), sys.executable, str(tmp_path / "child.py"),
         marker, str(ready), str(counts), "stubborn" if stubborn else "-", str(grace)],
        stdout=subprocess.PIPE, text=True, env=env,
        # a group of its own in this session, as a shell's job, lets Ctrl-Z stop it
        start_new_session=session, process_group=None if session else 0,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert runner.poll() is None and time.monotonic() < deadline, runner.stdout.read()
        time.sleep(0.02)
    return runner, counts


def wait_gone(marker: str, limit: float = 30) -> dict[int, str]:
    """Poll until no process names `marker` (a wait loop, not a timing check)."""
    deadline = time.monotonic() + limit
    while (left := with_marker(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("to", ["pid", "group"])
def test_a_signal_to_the_runner_reaches_the_command_once(tmp_path, marker, sig, to):
    """`kill -INT <pid>` (or SIGTERM, from a batch system) reaches the command as SIGINT; a
    terminal's Ctrl-C (the runner's whole group) does too, and only once."""
    runner, counts = start_runner(tmp_path, marker)
    try:
        if to == "pid":
            os.kill(runner.pid, sig)
        else:
            os.killpg(runner.pid, sig)
        out, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 128 + sig
    assert out.split() == ["interrupted", str(int(sig))]
    assert counts.read_text() == "INT\nDONE\n"
    assert wait_gone(marker, limit=0) == {}


def test_a_second_signal_ends_the_command_without_waiting(tmp_path, marker):
    runner, counts = start_runner(tmp_path, marker, stubborn=True, grace=300)
    try:
        os.kill(runner.pid, signal.SIGINT)
        while not counts.exists():
            time.sleep(0.02)
        os.kill(runner.pid, signal.SIGINT)
        out, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130
    assert counts.read_text() == "INT\n"
    assert wait_gone(marker, limit=0) == {}


def state(pid: int) -> str:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rfind(b")") + 2:].split()[0].decode()


def wait_state(pid: int, wanted: set[str]) -> str:
    """Poll until the process is in one of `wanted` states (a wait loop)."""
    deadline = time.monotonic() + 30
    while (now := state(pid)) not in wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


def test_ctrl_z_stops_and_continues_the_command_with_the_runner(tmp_path, marker):
    """The command's group is not the terminal's: SIGTSTP to the runner stops it too, and
    SIGCONT to the runner (`fg`) continues it."""
    runner, _ = start_runner(tmp_path, marker, session=False)
    try:
        (child,) = [pid for pid, cmd in with_marker(str(tmp_path / "child.py")).items()
                    if cmd.startswith(f"{sys.executable} {tmp_path / 'child.py'}")]
        os.kill(runner.pid, signal.SIGTSTP)
        assert wait_state(runner.pid, {"T"}) == "T"
        assert wait_state(child, {"T"}) == "T"
        os.kill(runner.pid, signal.SIGCONT)
        assert wait_state(child, {"S", "R"}) in {"S", "R"}
        os.kill(runner.pid, signal.SIGINT)
        runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 130


@pytest.mark.parametrize("stubborn", [False, True], ids=["stops", "stubborn"])
def test_the_command_dies_with_a_runner_killed_by_sigkill(tmp_path, marker, stubborn):
    """The supervisor's PR_SET_PDEATHSIG: the command is interrupted as on Ctrl-C and may
    clean up, and all of it is killed after the grace if it does not stop."""
    runner, counts = start_runner(tmp_path, marker, stubborn=stubborn, grace=1 if stubborn else 30)
    try:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=60)
        assert wait_gone(marker) == {}
        assert wait_gone(str(tmp_path / "child.py")) == {}
    finally:
        kill_marked(str(tmp_path / "child.py"))
    assert counts.read_text() == ("INT\n" if stubborn else "INT\nDONE\n")
