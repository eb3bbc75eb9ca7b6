"""The one subprocess helper: argument lists only, optional log file, process-group timeouts."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandError

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
        log_file.write(f"$ {shlex.join(args)}\n")
        log_file.flush()
    stdout = log_file if log_file is not None else (subprocess.PIPE if capture else None)
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
            text=True,
        )
    except OSError as exc:
        if log_file is not None:
            log_file.write(f"cannot start: {exc}\n")
            log_file.close()
        raise CommandError(args, None, log_path, output=str(exc)) from exc
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{proc.pid}\n")
    kill = _kill_group if new_session else _kill_process
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill(proc)
        out, _ = proc.communicate()
    except KeyboardInterrupt:
        if interrupt_grace is not None:
            _let_it_stop(proc, interrupt_grace, new_session)
        raise
    finally:
        if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave no orphans
            kill(proc)
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
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
