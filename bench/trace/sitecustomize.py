"""Process timeline for bench/run's breakdowns: on when BENCH_TRACE names a file.

bench/run puts this folder first on PYTHONPATH for the traced runs only, so every Python
process of a refinery run (the CLI, Snakemake, each `script:` job, pip) appends one JSON line
when it exits: pid, parent pid, start (from /proc, before the interpreter started), end, argv.
"""

import os

_PATH = os.environ.get("BENCH_TRACE")

if _PATH:
    import atexit
    import json
    import sys
    import time

    def _started() -> float:
        """Wall-clock time the process was created: its age from /proc, subtracted from now."""
        try:
            with open("/proc/self/stat") as fh:
                ticks = int(fh.read().rpartition(")")[2].split()[19])
            with open("/proc/uptime") as fh:
                uptime = float(fh.read().split()[0])
            return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError):
            return time.time()

    _START = _started()

    def _record() -> None:
        line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "start": _START,
                           "end": time.time(), "argv": [sys.executable, *sys.argv]})
        with open(_PATH, "a") as fh:
            fh.write(line + "\n")

    atexit.register(_record)
