"""What every figure of bench/run shares: the environment, timed commands, process timelines,
the result rows and their table."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
#: the checkout whose refinery is measured (bench/run --repo): this one unless told otherwise
CODE = REPO
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
PYCACHE = Path.home() / ".cache" / "refinery-bench" / "pycache"


def bench_env(trace: Path | None = None) -> dict[str, str]:
    """Only our own local index: no machine-wide pip config, find-links or constraints; this
    checkout's refinery_lib and web (whatever `pip install -e` last pointed at); bytecode
    cached; the process timeline recorder (bench/trace/sitecustomize.py) on when `trace` is
    given."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "REFINERY_", "BENCH_"))}
    # bytecode cached as on any installation (this machine sets PYTHONDONTWRITEBYTECODE, so
    # every process would recompile whatever changed since its .pyc), in a folder of our own
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    paths = [str(BENCH / "trace"), str(CODE)]
    paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if trace is not None:
        env["BENCH_TRACE"] = str(trace)
    return env


@dataclass
class Timed:
    seconds: float
    returncode: int | None
    timed_out: bool = False
    trace: Path | None = None


def timed(argv: list[str], *, env: dict[str, str], cwd: Path | None = None,
          timeout: float | None = None, log: Path | None = None) -> Timed:
    """Wall time of one command; on timeout its whole process group is killed."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            return Timed(time.perf_counter() - t, rc, trace=_trace_of(env))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Timed(time.perf_counter() - t, None, True, _trace_of(env))
    finally:
        if log:
            out.close()


def _trace_of(env: dict[str, str]) -> Path | None:
    return Path(env["BENCH_TRACE"]) if env.get("BENCH_TRACE") else None


def median(values: list[float]) -> float:
    return statistics.median(values)


def refinery_argv(inp: Path, out: Path, cache: Path, index_url: str, *extra: str,
                  jobs: int = 2) -> list[str]:
    return [sys.executable, "-m", "refinery_lib.cli", "--input", str(inp), "--output", str(out),
            "--cache", str(cache), "--python", PY, "--platform-tag", "native",
            "--index-url", index_url, "--jobs", str(jobs), *extra]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# -- results ------------------------------------------------------------------------------
@dataclass
class Row:
    figure: str
    value: float | None
    unit: str
    floor: float | None = None
    ratio: float | None = None
    goal: str = ""
    ok: bool | None = None  # None: informative row, no goal
    note: str = ""
    value_text: str = ""

    def cells(self) -> list[str]:
        value = self.value_text or fmt(self.value, self.unit)
        return [self.figure, value, fmt(self.floor, self.unit),
                "" if self.ratio is None else f"{self.ratio:.2f}x", self.goal,
                {True: "PASS", False: "FAIL", None: "info"}[self.ok]]


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if unit == "s":
        return f"{v:.2f} s" if v < 100 else f"{v:.0f} s"
    if unit == "ms":
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "ms/wheel":
        return f"{v:.2f} ms/wheel" if v < 100 else f"{v:.0f} ms/wheel"
    if unit == "/s":
        return f"{v:,.0f}/s"
    return f"{v:.3g} {unit}"


HEADER = ["figure", "value", "floor", "ratio", "goal", "result"]


def table(rows: list[Row]) -> str:
    cells = [HEADER] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r.cells()) + " |" for r in rows]
    return "\n".join(out)


# -- process timelines (bench/trace/sitecustomize.py) ------------------------------------------
@dataclass
class Proc:
    pid: int
    ppid: int
    start: float
    end: float
    argv: list[str]
    children: list[Proc] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def label(self) -> str:
        a = " ".join(self.argv[1:4])
        if "refinery_lib/cli.py" in a or "refinery_lib.cli" in a:
            return "refinery CLI"
        if "snakemake/__main__.py" in a:
            return "snakemake"
        if ".snakemake/scripts/" in a:
            return "job " + Path(self.argv[1]).name.split(".", 1)[1].removesuffix(".py")
        if "pip/__main__.py" in a:
            return f"pip {self.argv[2] if len(self.argv) > 2 else ''}".strip()
        if "build/__main__.py" in a:
            return "python -m build"
        if "auditwheel" in a:
            return "auditwheel"
        if self.argv[1:2] == ["-c"]:
            return "python -c (smoke import, build-env probe, ...)"
        return Path(self.argv[1]).name if len(self.argv) > 1 else "python"


def load_trace(path: Path) -> list[Proc]:
    procs = [Proc(d["pid"], d["ppid"], d["start"], d["end"], d["argv"])
             for d in map(json.loads, path.read_text().splitlines()) if d]
    by_pid = {p.pid: p for p in procs}
    for p in procs:
        if p.ppid in by_pid and by_pid[p.ppid] is not p:
            by_pid[p.ppid].children.append(p)
    for p in procs:
        p.children.sort(key=lambda c: c.start)
    return procs


def breakdown(path: Path | None) -> list[tuple[str, float]]:
    """Where a refinery run's wall time went, from its process timeline, in order."""
    if path is None or not path.exists():
        return []
    procs = load_trace(path)
    cli = next((p for p in procs if p.label == "refinery CLI"), None)
    if cli is None:
        smk = next((p for p in procs if p.label == "snakemake"), None)
        return [("snakemake process (its shell job is not a Python process: not traced)",
                 smk.seconds)] if smk else []
    smks = [c for c in cli.children if c.label == "snakemake"]
    out = [("total (refinery CLI process)", cli.seconds)]
    out.append(("refinery CLI outside Snakemake (own start, config, summary; Snakemake's "
                "interpreter teardown)", cli.seconds - sum(s.seconds for s in smks)))
    for i, smk in enumerate(smks):
        tag = f"snakemake run {i + 1}" if len(smks) > 1 else "snakemake"
        jobs = smk.children
        if not jobs:
            out.append((f"{tag}: the whole process (no job ran as a Python process of its "
                        "own: nothing to do, or jobs ran in-process)", smk.seconds))
            continue
        out.append((f"{tag}: start, parse, DAG until the first job", jobs[0].start - smk.start))
        busy = _union(jobs)
        out.append((f"{tag}: scheduling between jobs", (jobs[-1].end - jobs[0].start) - busy))
        out.append((f"{tag}: after the last job (handlers, timer thread, exit)",
                    smk.end - max(j.end for j in jobs)))
        sums: dict[str, list[float]] = {}
        for j in jobs:
            sums.setdefault(j.label, []).append(j.seconds)
        for label, secs in sums.items():
            n = f" x{len(secs)}" if len(secs) > 1 else ""
            out.append((f"{tag}: {label}{n}", sum(secs)))
            kids: dict[str, float] = {}
            for j in jobs:
                if j.label == label:
                    for k in _descendants(j):
                        kids[k.label] = kids.get(k.label, 0.0) + k.seconds
            for k_label, k_secs in kids.items():
                out.append((f"{tag}: {label}{n}: of which {k_label}", k_secs))
            if kids:
                own = sum(secs) - sum(k.seconds for j in jobs if j.label == label
                                      for k in j.children)
                out.append((f"{tag}: {label}{n}: outside its child processes (own work; a "
                            "child's teardown after its exit handlers lands here too)", own))
    return out


def _descendants(p: Proc) -> list[Proc]:
    out = []
    for c in p.children:
        out.append(c)
        out.extend(_descendants(c))
    return out


def _union(procs: list[Proc]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for p in sorted(procs, key=lambda p: p.start):
        if cur_e is None or p.start > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = p.start, p.end
        else:
            cur_e = max(cur_e, p.end)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def format_breakdown(title: str, items: list[tuple[str, float]]) -> str:
    if not items:
        return ""
    lines = [title]
    lines += [f"  {secs:8.2f} s  {label}" for label, secs in items]
    return "\n".join(lines)


# -- the machine --------------------------------------------------------------------------
def snapshot(src: Path, dest: Path) -> str:
    """Copy the checkout `src` as it is now (tracked files with their uncommitted changes, and
    new files git does not ignore) to `dest`, so a run measures one state of the code while its
    owner keeps editing. Returns `snapshot_state(src)`."""
    state = snapshot_state(src)
    listed = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True)
    shutil.rmtree(dest, ignore_errors=True)
    if listed.returncode != 0:  # not a git checkout: all of it, caches aside
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns(
            ".git", "__pycache__", ".snakemake", "*.egg-info"))
        return state
    files = listed.stdout
    for rel in filter(None, files.decode().split("\0")):
        source = src / rel
        if source.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return state


def snapshot_state(src: Path) -> str:
    """The commit of a checkout, and how its working tree differs (bench/ and docs/bench.md
    aside): a count of changed and new files and a hash of the difference."""
    import hashlib

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", str(src), *args], capture_output=True).stdout

    commit = git("rev-parse", "--short", "HEAD").decode().strip() or "(not a git checkout)"
    diff = git("diff", "HEAD", "--", ".", ":!bench", ":!docs/bench.md")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", ".", ":!bench").split()
    if not diff and not untracked:
        return commit
    digest = hashlib.sha256(diff + b"\n".join(untracked)).hexdigest()[:10]
    return (f"{commit} + uncommitted changes ({diff.count(b'diff --git ')} file(s) changed, "
            f"{len(untracked)} new; diff sha256 {digest})")


def machine() -> dict[str, str]:
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    mem = ""
    try:
        kb = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal")))
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass

    def version(module: str) -> str:
        try:
            out = subprocess.run([sys.executable, "-c", f"import {module}; "
                                  f"print({module}.__version__)"], capture_output=True,
                                 text=True, env=bench_env(), check=True)
            return out.stdout.strip()
        except (subprocess.CalledProcessError, OSError):
            return "?"

    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores, {mem} RAM",
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        "snakemake": version("snakemake"),
        "pip": version("pip"),
        "sqlite": sqlite3.sqlite_version,
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }
