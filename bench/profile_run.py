"""Where a command's time goes, across its subprocesses: py-spy samples summed per process.

    python bench/profile_run.py [--rate 250] [--top 8] -- refinery --input ... --output ...

Runs the command under ``py-spy record --subprocesses --format raw`` (py-spy must be installed:
``pip install py-spy``; needs ptrace, fine as root) and prints, per process (Snakemake jobs are
separate processes: every ``script:`` job is one), its sampled seconds, what it was, and its
heaviest functions by inclusive samples. Idle threads are not sampled, so the seconds are the
time a process spent running (CPU and blocking I/O in Python), summed over its threads.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_PROC = re.compile(r'^process (\d+):"(.*)"$')


def summarize(raw: Path, rate: int, top: int = 8) -> str:
    per_proc: collections.Counter[str] = collections.Counter()
    funcs: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        procs = [f for f in frames if _PROC.match(f)]
        label = _label(_PROC.match(procs[-1]).group(2)) if procs else "?"
        n = int(count)
        per_proc[label] += n
        seen = set()
        for f in frames:
            if _PROC.match(f):
                continue
            name = re.sub(r"\s*\(.*?/?(site-packages/|lib/python3\.\d+/)?", " (", f, count=1)
            if name not in seen:
                seen.add(name)
                funcs[label][name] += n
    lines = []
    for label, n in per_proc.most_common():
        lines.append(f"{n / rate:7.2f} s  {label}")
        for name, m in funcs[label].most_common(top + 6)[6:]:
            lines.append(f"          {m / rate:6.2f} s  {name[:150]}")
    return "\n".join(lines)


def _label(cmd: str) -> str:
    """A short name for a process: the Snakemake job's script, or the command's start."""
    m = re.search(r"/(scripts/\w+\.py|tmp\w*\.\w+\.py)", cmd)
    if "snakemake" in cmd and "--snakefile" in cmd:
        return "snakemake (scheduler: DAG, jobs, checkpoints)"
    if m:
        return f"script job {m.group(1)}"
    if " pip " in f" {cmd} " or "-m pip" in cmd:
        return "pip " + " ".join(cmd.split()[3:6])
    return cmd[:110]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    p.add_argument("--top", type=int, default=8, help="functions shown per process")
    p.add_argument("--keep", type=Path, help="keep the raw samples here")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the command after --")
    if not shutil.which("py-spy"):
        p.error("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.keep or Path(tmp) / "samples.raw"
        res = subprocess.run(
            ["py-spy", "record", "--subprocesses", "-r", str(args.rate),
             "--format", "raw", "-o", str(raw), "--", *cmd],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if not raw.exists():
            print(res.stderr, file=sys.stderr)
            return 1
        print(summarize(raw, args.rate, args.top))
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
