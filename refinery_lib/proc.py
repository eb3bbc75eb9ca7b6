"""The one subprocess helper: argument lists only, optional log file, process-group timeouts."""

from __future__ import annotations

import codecs
import logging
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandError
from .safe_env import Redactor, redact

log = logging.getLogger(__name__)


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
) -> Result:
    """Run `argv` (never through a shell).

    Output goes to `log_path` (appended) when given, else is captured and returned. On timeout
    the whole process group is killed, so compilers started by a build die with it.

    `new_session=False` keeps the command in the caller's process group instead, so a signal to
    that group (a terminal's Ctrl-C, `kill -- -PGID`, a batch system) reaches both; it is then
    killed alone, never its group. With `interrupt_grace`, a KeyboardInterrupt gives the
    command that many seconds to stop by itself (in its own session it is first sent SIGINT,
    as a terminal would) before it is killed. `pid_file` records the process group while the
    command runs, so that a later run can end it after this process was killed without a
    chance to clean up (`kill_stale_group`).
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
    try:
        proc = subprocess.Popen(
            args,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=new_session,
            pass_fds=tuple(pass_fds),
            text=log_file is None,
        )
    except OSError as exc:
        if log_file is not None:
            log_file.write(f"cannot start: {exc}\n")
            log_file.close()
        raise CommandError(args, None, log_path, output=str(exc)) from exc
    copier = _LogCopier(proc, log_file) if log_file is not None else None
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{proc.pid}\n")
    kill = _kill_group if new_session else _kill_process
    timed_out = False
    try:
        if copier is not None:
            proc.wait(timeout=timeout)
            out = ""
        else:
            out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill(proc)
        out = "" if copier is not None else proc.communicate()[0]
    except KeyboardInterrupt:
        if interrupt_grace is not None:
            _let_it_stop(proc, interrupt_grace, new_session)
        raise
    finally:
        if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave no orphans
            kill(proc)
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        if copier is not None:
            copier.finish()
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
    secret is written, whatever the command prints. A thread reads the pipe while the caller
    waits; once the command has ended, what is left in the pipe is read and the thread stops
    even if a process that escaped the group still holds the pipe open."""

    def __init__(self, proc: subprocess.Popen, log_file) -> None:
        self._fd = proc.stdout.fileno()
        self._pipe = proc.stdout
        self._log = log_file
        self._redactor = Redactor()
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
        self._log.write(self._redactor.flush())
        self._log.flush()

    def _write(self, text: str) -> None:
        if text:
            self._log.write(self._redactor.feed(text))
            self._log.flush()

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


def _kill_process(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
