"""The supervisor every contained command runs under: no process it starts outlives it.

    python -I -S contain.py [--status-fd N] [--parent PID] [--grace S] [--sigint default] -- argv...

`proc.run` starts it (stdlib only, run as a file, so it needs neither refinery's package nor
its dependencies). It makes itself a child subreaper (PR_SET_CHILD_SUBREAPER): a descendant
whose parent exits - a double fork, a daemon that called setsid() - is reparented to it
rather than to init, so the supervisor still sees it. It starts the command, waits for it
(reaping the orphans that arrive meanwhile), then SIGKILLs every process still below it,
reaps them, and exits with the command's status (dying of the same signal if the command
died of one).

Signals: SIGINT stays blocked in the supervisor (a Ctrl-C or `killpg` reaches the command in
the same process group, which decides). SIGTERM means "end it now" (proc.run's timeouts and
interrupts, a batch system's or systemd's stop): the same sweep at once, the supervisor then
dies of SIGKILL as the command did. SIGHUP means "the runner is gone": the kernel sends it
when the parent dies (PR_SET_PDEATHSIG), so a runner killed by SIGKILL takes its commands with
it: the sweep at once, or with `--grace`, SIGINT to the supervisor's process group first
(Snakemake stops its jobs as on Ctrl-C) and the sweep only after the grace or once the command
has ended. (Not SIGTERM for both: the kernel sends the death signal again each time the
parent is handed to another thread of the dying process, and it cannot be told from a kill by
the parent.) The supervisor runs no Python signal handler: it takes its signals with
sigwaitinfo, so none can interrupt a sweep half-way.

Not a sandbox: a process that wants to outlive the build can (a systemd or `at` job, a
process named like an engine helper, see ENGINE_HELPERS); containment is for the daemons,
compiler servers and test servers that builds leave behind by accident.

`--status-fd`: the supervisor writes why the command could not be started there (empty when
it started) and closes it, so the caller can report "cannot start" as for a direct start.

`--sigint default`: the command starts with SIGINT at its default even when it was ignored
here. A command started from a shell without job control (`cmd &` in a script, many CI
runners) inherits SIGINT ignored, as subprocess keeps it; the command that its runner stops
with SIGINT (Snakemake, see proc.run's `forward_signals`) would then never stop.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: seconds the sweep keeps killing: a process in uninterruptible sleep can outlast SIGKILL
SWEEP_LIMIT = 10.0
#: process names (comm) left to their container engine, with everything below them: podman's
#: container monitor, which double-forks away from `podman run` (the container itself runs
#: under it, in a PID namespace of its own, removed by --rm, --timeout or `podman rm --force`)
#: and rootless podman's pause process, which keeps the user namespace for later commands.
#: Killing them mid-way can leave podman's state behind; docker's live under its daemon.
ENGINE_HELPERS = frozenset({"conmon", "catatonit", "podman pause"})


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux, or no libc prctl: contain what we can
        return False


def _stat(pid: str) -> tuple[int, str, str] | None:
    """(parent pid, state, name) of a process from /proc, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    end = data.rfind(b")")
    fields = data[end + 2:].split()
    return int(fields[1]), fields[0].decode(), data[data.find(b"(") + 1:end].decode(
        errors="replace")


def descendants(root: int) -> list[int]:
    """Every live (not zombie) process below `root`, from one scan of /proc, except a
    container engine's own helpers and what runs under them (ENGINE_HELPERS)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        info = _stat(name)
        if info is not None and info[1] not in ("Z", "X") and info[2] not in ENGINE_HELPERS:
            children.setdefault(info[0], []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _reap(child: int = 0) -> int | None:
    """Collect every child that has ended (orphans reparented here included); returns the
    wait status of `child` if it was one of them."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == child:
            found = status


def sweep(child: int = 0, limit: float = SWEEP_LIMIT) -> int | None:
    """SIGKILL every process below this one until none is left (each round finds the
    children of the killed, reparented here), and reap them; returns the wait status of
    `child` if it was reaped here."""
    me = os.getpid()
    deadline = time.monotonic() + limit
    pause = 0.002
    found = None
    while True:
        status = _reap(child)
        found = status if status is not None else found
        pids = descendants(me)
        if not pids or time.monotonic() > deadline:
            return found
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _exit_like(status: int) -> None:
    """Exit with the command's wait status: its exit code, or the signal it died of."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    signum = -code
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (ImportError, OSError, ValueError):
        pass
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # a signal that does not end a process by default


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i] != "--":
        key = argv[i].lstrip("-")
        if key not in ("status-fd", "parent", "grace", "sigint") or i + 1 >= len(argv):
            raise SystemExit(f"contain: unknown or incomplete option {argv[i]!r}")
        opts[key] = argv[i + 1]
        i += 2
    command = argv[i + 1:]
    if not command:
        raise SystemExit("contain: usage: contain.py [options] -- argv...")
    return opts, command


def main(argv: list[str]) -> None:
    opts, command = _parse(argv)
    status_fd = int(opts["status-fd"]) if "status-fd" in opts else None
    parent = int(opts.get("parent", os.getppid()))
    grace = float(opts.get("grace", 0))
    if opts.get("sigint", "default") != "default":
        raise SystemExit(f"contain: --sigint takes only 'default', not {opts['sigint']!r}")

    # no Python handler ever runs here: the signals that matter are taken by sigwaitinfo, and
    # SIGINT stays blocked (it is for the command, in the same process group)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, *WAITED})
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    # the parent died before PR_SET_PDEATHSIG took hold
    orphaned = os.getppid() != parent
    if status_fd is not None:
        os.set_inheritable(status_fd, False)  # the caller reads it until the command runs
    try:
        child = _spawn(command, sigint_default="sigint" in opts)
    except OSError as exc:
        if status_fd is not None:
            os.write(status_fd, str(exc).encode(errors="replace"))
        else:
            sys.stderr.write(f"contain: cannot start {command[0]}: {exc}\n")
        os._exit(127)
    # the command holds what it was given (the cache's lock for Snakemake), nothing here
    # does; closing the status fd tells the caller the command started
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    _exit_like(_supervise(child, grace, orphaned))


def _spawn(command: list[str], sigint_default: bool = False) -> int:
    """fork + exec as subprocess does it: PATH of this environment (the command's), an empty
    signal mask, default SIGPIPE and SIGXFSZ (Python ignores them), every other ignored
    signal still ignored (SIGINT too, unless `sigint_default`). An exec failure comes back
    through a close-on-exec pipe.
    (posix_spawn would leave glibc's internal signals 32 and 33 ignored in the command.)"""
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            for signum in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(signum, signal.SIG_DFL)
            if sigint_default or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.execvp(command[0], command)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
            why = (f"[Errno {exc.errno}] {exc.strerror}: {command[0]!r}"
                   if isinstance(exc, OSError) and exc.errno else repr(exc))
            os.write(err_w, why.encode(errors="replace"))
        os._exit(127)
    os.close(err_w)
    chunks = []
    while chunk := os.read(err_r, 4096):
        chunks.append(chunk)
    os.close(err_r)
    if chunks:
        os.waitpid(pid, 0)
        raise OSError(b"".join(chunks).decode(errors="replace"))
    return pid


#: the signals the supervisor waits for
WAITED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP)


def _supervise(child: int, grace: float, orphaned: bool) -> int:
    """Wait for `child`, reaping orphans meanwhile; a stop ends it (see the module's text).
    Returns its wait status after the sweep."""
    deadline: float | None = None
    signum: int  # the signal taken; 0 when the grace ran out
    while True:
        status = _reap(child)
        if status is not None:
            sweep()
            return status
        if orphaned:
            orphaned, signum = False, signal.SIGHUP
        elif deadline is None:
            signum = signal.sigwaitinfo(set(WAITED)).si_signo
        else:
            info = signal.sigtimedwait(set(WAITED), max(0.0, deadline - time.monotonic()))
            signum = info.si_signo if info is not None else 0
        if signum == signal.SIGCHLD:
            continue
        if signum == signal.SIGHUP and grace > 0:
            if deadline is None:
                # the runner is gone: the command stops as on Ctrl-C, then it is ended
                try:
                    os.killpg(os.getpgrp(), signal.SIGINT)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + grace
            continue
        status = sweep(child)
        return signal.SIGKILL if status is None else status  # a wait status: killed


if __name__ == "__main__":
    main(sys.argv[1:])
