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
) -> Result:
    """Run `argv` (never through a shell).

    Output goes to `log_path` (appended) when given, else is captured and returned. On timeout
    the whole process group is killed, so compilers started by a build die with it.
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
            start_new_session=True,
            text=True,
        )
    except OSError as exc:
        if log_file is not None:
            log_file.write(f"cannot start: {exc}\n")
            log_file.close()
        raise CommandError(args, None, log_path, output=str(exc)) from exc
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave no orphans
            _kill_group(proc)
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


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
