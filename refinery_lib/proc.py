"""The one subprocess helper: argument lists only, optional log file, process-group timeouts,
and containment: a command in a session of its own runs under `contain.py`, so that nothing it
starts (a double fork, a setsid() daemon) outlives it, and it dies when its runner does."""

from __future__ import annotations

import codecs
import logging
import os
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from .errors import CommandError
from .logcap import BoundedLog
from .safe_env import Redactor, redact

log = logging.getLogger(__name__)

#: the supervisor of contained commands, run as a file by this interpreter (stdlib only)
CONTAIN = Path(__file__).with_name("contain.py")
#: seconds the supervisor gets to end its command and what it started before its process
#: group is killed outright (its sweep normally takes milliseconds)
SWEEP_WAIT = 30.0
#: how often a forwarding wait looks for a signal
_POLL = 0.2

#: what signal.signal takes and gives back: a function, SIG_DFL or SIG_IGN, or None (a
#: handler not installed from Python)
_Handler = Callable[[int, FrameType | None], Any] | int | None


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP reached this process while it ran a command that
    forwards signals; `signum` says which (the CLI exits 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    output: str
    duration: float
    timed_out: bool = False


def run(
    argv: Sequence[str | os.PathLike],
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
    new_session: bool = True,
    interrupt_grace: float | None = None,
    pass_fds: Sequence[int] = (),
    pid_file: Path | None = None,
    contain: bool | None = None,
    forward_signals: bool = False,
) -> Result:
    """Run `argv` (never through a shell).

    Output goes to `log_path` (appended) when given, else is captured and returned. On timeout
    the whole process group is killed (for a contained command: all it started, see below),
    so compilers started by a build die with it.

    `new_session=False` keeps the command in the caller's process group instead, so a signal to
    that group (a terminal's Ctrl-C, `kill -- -PGID`, a batch system) reaches both; it is then
    killed alone, never its group. With `interrupt_grace`, a KeyboardInterrupt gives the
    command that many seconds to stop by itself (in its own session it is first sent SIGINT,
    as a terminal would) before it is killed. `pid_file` records the process group while the
    command runs, so that a later run can end it after this process was killed without a
    chance to clean up (`kill_stale_group`).

    `contain` (default: for a command in a session of its own, and one that forwards signals)
    runs it under `contain.py`, a child subreaper with PR_SET_PDEATHSIG: every process it
    leaves behind, even one reparented by a double fork or in a session of its own, is
    SIGKILLed when it ends (success, failure, timeout, interrupt), and the whole tree goes
    when this process dies, even by SIGKILL. A container engine's monitor (podman's conmon)
    is left to the engine. Ending a contained command (timeout, interrupt) asks the
    supervisor for that sweep.

    `forward_signals` (main thread only) runs the command in a process group of its own (not
    a session: it keeps the terminal) and passes SIGINT, SIGTERM or SIGHUP that reach this
    process - a terminal's Ctrl-C, or a `kill` of this pid alone - on to that group once, as
    SIGINT (Snakemake stops its jobs on SIGINT; on SIGTERM it would finish them first). The
    command is then given `interrupt_grace` seconds (a second signal stops waiting) and
    ended; `Interrupted` is raised. The command never gets the terminal's signal twice: it
    is not in the terminal's foreground group. If this process is killed, the supervisor
    sends the SIGINT itself and ends the command after the same grace. The command starts
    with SIGINT at its default even when this process inherited it ignored.
    """
    args = [os.fspath(a) for a in argv]
    start = time.monotonic()
    log_file = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        log_file.write(redact(f"$ {shlex.join(args)}\n"))
        log_file.flush()
    stdout = subprocess.PIPE if log_file is not None or capture else None
    if contain is None:
        contain = new_session or forward_signals
    contain = contain and _can_contain()
    popen_argv, fds, status_fd = args, tuple(pass_fds), None
    if contain:
        status_fd, status_w = os.pipe()
        popen_argv = [sys.executable, "-I", "-S", str(CONTAIN), "--status-fd", str(status_w),
                      "--parent", str(os.getpid())]
        if forward_signals and interrupt_grace:
            popen_argv += ["--grace", f"{interrupt_grace:g}"]
        if forward_signals:
            # SIGINT is how this process stops the command: never inherited ignored
            popen_argv += ["--sigint", "default"]
        popen_argv += ["--", *args]
        fds += (status_w,)
    proc = None
    try:
        try:
            proc = subprocess.Popen(
                popen_argv,
                stdout=stdout,
                stderr=subprocess.STDOUT if stdout is not None else None,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=new_session and not forward_signals,
                process_group=0 if forward_signals else None,
                pass_fds=fds,
                text=log_file is None,
            )
        finally:
            if status_fd is not None:
                os.close(status_w)
                if proc is None:
                    os.close(status_fd)
        why = _started(proc, status_fd) if status_fd is not None else ""
        if why:
            raise OSError(why)
    except OSError as exc:
        if log_file is not None:
            log_file.write(f"cannot start: {exc}\n")
            log_file.close()
        raise CommandError(args, None, log_path, output=str(exc)) from exc
    forwarder = _Forwarder(proc.pid) if forward_signals else None
    copier = _LogCopier(proc, log_file) if log_file is not None else None
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{proc.pid}\n")
    kill = _end_contained if contain else _kill_group if new_session else _kill_process
    timed_out = False
    try:
        if forwarder is not None and (copier is not None or stdout is None):
            forwarder.wait(proc, timeout)
            out = ""
        elif copier is not None:
            proc.wait(timeout=timeout)
            out = ""
        else:
            out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill(proc)
        out = "" if copier is not None else proc.communicate()[0]
    except KeyboardInterrupt:
        if forwarder is not None and interrupt_grace is not None:
            forwarder.let_it_stop(proc, interrupt_grace)
        elif interrupt_grace is not None:
            _let_it_stop(proc, interrupt_grace, new_session)
        raise
    finally:
        if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave no orphans
            kill(proc)
        if forwarder is not None:
            forwarder.restore()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        if copier is not None:
            copier.finish()
    if forwarder is not None and forwarder.signum is not None:
        # a signal came as the command ended on its own: this process stops all the same
        if log_file is not None:
            log_file.close()
        raise Interrupted(forwarder.signum)
    duration = time.monotonic() - start
    if log_file is not None:
        if timed_out:
            log_file.write(f"\n*** killed after {timeout:g} s timeout (process group {proc.pid})\n")
        log_file.write(f"*** exit code {proc.returncode} after {duration:.2f} s\n")
        log_file.close()
        out = ""
    result = Result(args, proc.returncode, out or "", duration, timed_out)
    if check and (timed_out or proc.returncode != 0):
        log.error("command failed: %s", shlex.join(args))
        raise CommandError(args, proc.returncode, log_path, timed_out=timed_out, output=out or "")
    return result


class _LogCopier:
    """Copies a command's output to its log through `safe_env.Redactor`, so that no known
    secret is written, whatever the command prints, and `logcap.BoundedLog`, so that the log
    keeps the first `logcap.HEAD_BYTES` and the last `logcap.TAIL_BYTES` of it (per command,
    with a marker line where the middle was left out) and memory stays bounded. A thread
    reads the pipe while the caller waits; once the command has ended, what is left in the
    pipe is read and the thread stops even if a process that escaped the group still holds
    the pipe open."""

    def __init__(self, proc: subprocess.Popen, log_file: TextIO) -> None:
        assert proc.stdout is not None  # run() pipes the output of a logged command
        self._fd = proc.stdout.fileno()
        self._pipe = proc.stdout
        self._log = BoundedLog(log_file, redactor=Redactor())
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while True:
                ready = sel.select(timeout=0.2)
                if not ready:
                    if self._done.is_set():
                        break
                    continue
                chunk = os.read(self._fd, 1 << 16)
                if not chunk:
                    break
                self._write(self._decoder.decode(chunk))
        self._write(self._decoder.decode(b"", final=True))
        self._log.finish()  # the redactor's last piece, the held-back tail, the marker

    def _write(self, text: str) -> None:
        if text:
            self._log.write(text)  # flushed while it goes to the log's head

    def finish(self) -> None:
        self._done.set()
        self._thread.join()
        self._pipe.close()


def _let_it_stop(proc: subprocess.Popen, grace: float, own_session: bool) -> None:
    """After Ctrl-C: wait for the command to clean up and exit (a second Ctrl-C stops waiting).
    In the caller's group it got the SIGINT already; in its own session it is passed on."""
    try:
        if own_session:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired, KeyboardInterrupt):
        pass


def _can_contain() -> bool:
    """Containment needs Linux (prctl, /proc) and an interpreter to run the supervisor."""
    return sys.platform.startswith("linux") and bool(sys.executable) and CONTAIN.is_file()


def _started(proc: subprocess.Popen, status_fd: int) -> str:
    """Wait until the supervisor has started the command: "" then, else why it could not
    (the supervisor has exited and is reaped)."""
    chunks = []
    try:
        while chunk := os.read(status_fd, 4096):
            chunks.append(chunk)
    except BaseException:
        os.close(status_fd)
        _end_contained(proc)
        raise
    os.close(status_fd)
    why = b"".join(chunks).decode(errors="replace")
    if why:
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return why


class _Forwarder:
    """While a command runs in a process group of its own: SIGINT, SIGTERM and SIGHUP that
    reach this process are passed to that group as SIGINT, the first one only. The handler
    raises nothing (an exception could land anywhere, even in a cleanup); the waits below
    look at what came."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.signum: int | None = None
        self.count = 0
        self._old: dict[int, _Handler] = {}
        if threading.current_thread() is not threading.main_thread():
            # the panel's worker thread: the supervisor still ends the command with us
            log.debug("signals are not forwarded: not in the main thread")
            return
        for signum in self.SIGNALS:
            self._old[signum] = signal.signal(signum, self._handle)
        # Ctrl-Z: the command's group is not the terminal's, so it is stopped and continued
        # with this process
        self._old[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._suspend)

    def _handle(self, signum: int, _frame) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
            try:
                os.killpg(self.pgid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def _suspend(self, signum: int, _frame) -> None:
        try:
            os.killpg(self.pgid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # stops here until SIGCONT
        signal.signal(signum, self._suspend)
        try:
            os.killpg(self.pgid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def wait(self, proc: subprocess.Popen, timeout: float | None) -> None:
        """proc.wait(timeout), raising Interrupted once a signal has come."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.signum is not None:
                raise Interrupted(self.signum)
            step = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            try:
                proc.wait(timeout=max(step, 0))
                return
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def let_it_stop(self, proc: subprocess.Popen, grace: float) -> None:
        """After the first signal (forwarded already): wait for the command to clean up and
        exit; a second signal stops waiting."""
        deadline = time.monotonic() + grace
        while self.count < 2 and time.monotonic() < deadline:
            try:
                proc.wait(timeout=_POLL)
                return
            except subprocess.TimeoutExpired:
                continue

    def restore(self) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old = {}


def kill_stale_group(pid_file: Path, marker: str) -> bool:
    """Kill the process group recorded in `pid_file` by a run that was killed (SIGKILL) before
    it could end it, if a process of that group still names `marker` (a path) in its command
    line or working directory: a recycled pid is left alone. Returns whether one was killed."""
    try:
        pgid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    pid_file.unlink(missing_ok=True)
    ours = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ours = ours or marker in cmd or os.readlink(entry / "cwd").startswith(marker)
        except OSError:
            continue
    if not ours:
        return False
    log.warning("killing process group %d left running by an interrupted run", pgid)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _end_contained(proc: subprocess.Popen) -> None:
    """Ask a contained command's supervisor (SIGTERM) to SIGKILL all it supervises, itself
    last; kill its process group if it has not done so in SWEEP_WAIT."""
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=SWEEP_WAIT)
    except subprocess.TimeoutExpired:
        _kill_group(proc)


def _kill_process(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
