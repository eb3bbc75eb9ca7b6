#!/usr/bin/env python3
"""The fault matrix: the real `refinery run` put through every fault a run meets in the field,
each compared with a clean run of the same wheelhouse.

    python bench/faults.py [--only kill,flaky-index] [--noise-mb 200] [--json out.json] [--keep]

The wheelhouse (made here, served by an HTTP index this script runs and can make fail):

- ``fm-cfast``: a foreign C-extension wheel, rebuilt from its sdist;
- ``fm-slow``: the same, whose build sleeps (the window in which runs are killed);
- ``fm-noisy``: its build prints ``--noise-mb`` MiB (the huge log);
- ``fm-escape``: its build starts a process in a session of its own, holding the build's
  output open (the escaping process);
- ``fm-pure``: a pure wheel, reused.

For each fault the run either ends like the clean one (same manifest statuses, the same
sha256 for every output wheel, the output holding exactly the manifest's wheels) or stops with
one line naming the cause and no traceback, and then the next, plain run does end like the
clean one. After every run no process of the run is left (the escapee included), and each run's
peak memory (the largest process of its tree, from wait4) is printed: the noisy build must not
show in it. A run never exits 0 over an output that does not match its manifest.

Exit status: 0 when every fault passes, 1 otherwise. Needs a C compiler, the project's
dependencies and a setuptools wheel (found as bench/synth.py finds it). The disk-full fault
needs root (it mounts a small tmpfs as the output folder) and is skipped otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from common import PY, bench_env  # noqa: E402
from synth import make_sdist, tool_wheels  # noqa: E402

from tests.fixtures.processes import kill_all, live_processes  # noqa: E402
from tests.fixtures.projects import make_wheel, write_simple_index  # noqa: E402

#: how long a build of fm-slow sleeps: the window in which runs are killed
SLOW_BUILD_SECONDS = 12
#: how long the processes of a killed run may take to end (a wait, not a goal)
GONE_WITHIN = 30.0
#: a run's largest process must stay under this (MiB): the noisy build prints far more
PEAK_RSS_CAP_MB = 400
NAMES = ("fm-cfast", "fm-slow", "fm-noisy", "fm-escape", "fm-pure")


# ---------------------------------------------------------------------------- the index


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, failing as the server's `mode` says: "ok", "down" (the connection is
    dropped before any answer) or "flaky" (each path's first two requests get a 503 or a
    dropped connection, the third is served)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        mode = server.mode  # type: ignore[attr-defined]
        if mode == "down":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "flaky":
            with server.lock:  # type: ignore[attr-defined]
                seen = server.seen.get(self.path, 0) + 1  # type: ignore[attr-defined]
                server.seen[self.path] = seen  # type: ignore[attr-defined]
            if seen == 1:
                self.send_error(503, "flaky on purpose")
                return
            if seen == 2:
                self.close_connection = True
                self.connection.shutdown(2)
                return
        super().do_GET()


class Index:
    def __init__(self, root: Path) -> None:
        handler = functools.partial(_Handler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.mode = "ok"  # type: ignore[attr-defined]
        self.server.seen = {}  # type: ignore[attr-defined]
        self.server.lock = threading.Lock()  # type: ignore[attr-defined]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def mode(self, mode: str) -> None:
        self.server.seen = {}  # type: ignore[attr-defined]
        self.server.mode = mode  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def failing(self, mode: str) -> Iterator[None]:
        """The index fails as `mode` says for the block, and serves again after it."""
        self.mode(mode)
        try:
            yield
        finally:
            self.mode("ok")

    def close(self) -> None:
        self.server.shutdown()


# ---------------------------------------------------------------------------- the wheelhouse


def _noisy(mib: int) -> str:
    return (
        "import sys\n"
        "if 'bdist_wheel' in sys.argv:\n"
        "    _line = 'noise ' * 20 + '\\n'\n"
        f"    _block = _line * (1048576 // len(_line))\n"
        f"    for _ in range({mib}):\n"
        "        sys.stdout.write(_block)\n"
        "    sys.stdout.flush()\n"
    )


def _escape(marker: str) -> str:
    # a process in a session of its own that keeps the build's output open, as a daemon would
    return (
        "import subprocess, sys\n"
        "if 'bdist_wheel' in sys.argv:\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(900)', "
        f"{marker!r}], start_new_session=True, stdin=subprocess.DEVNULL)\n"
    )


def prepare(root: Path, noise_mib: int, marker: str) -> tuple[Path, Path]:
    """The wheelhouse and the index's folder."""
    inp, files = root / "wheelhouse", root / "index" / "files"
    foreign = f"cp{sys.version_info[0]}{sys.version_info[1]}-" \
              f"cp{sys.version_info[0]}{sys.version_info[1]}-manylinux2014_s390x"
    make_sdist(files, "fm-cfast", "1.0", c_ext=True)
    make_sdist(files, "fm-slow", "1.0", c_ext=True, build_sleep=SLOW_BUILD_SECONDS)
    make_sdist(files, "fm-noisy", "1.0", prelude=_noisy(noise_mib))
    make_sdist(files, "fm-escape", "1.0", prelude=_escape(marker))
    for name in ("fm-cfast", "fm-slow", "fm-noisy", "fm-escape"):
        make_wheel(inp, name, "1.0", foreign)
    make_wheel(inp, "fm-pure", "1.0")
    for wheel in tool_wheels():
        shutil.copy(wheel, files)
    write_simple_index(files, root / "index" / "simple")
    return inp, root / "index"


# ---------------------------------------------------------------------------- runs


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("refinery:")]


@dataclass
class Case:
    root: Path
    index: Index
    inp: Path
    env: dict[str, str]
    marker: str

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "refinery_lib.cli", "run", "--input", str(self.inp),
                "--output", str(self.out), "--cache", str(self.cache), "--python", PY,
                "--platform-tag", "native", "--index-url", self.index.url, "--jobs", "2",
                "--attempt-backoff-base", "0.01", "--attempt-backoff-max", "0.02", *extra]

    def start(self, *extra: str) -> subprocess.Popen:
        self.root.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(self.argv(*extra), env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def finish(self, proc: subprocess.Popen, started: float) -> Run:
        out_chunks: list[str] = []
        err_chunks: list[str] = []
        readers = [threading.Thread(target=lambda: out_chunks.append(proc.stdout.read())),
                   threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))]
        for t in readers:
            t.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        for t in readers:
            t.join()
        return Run(proc.returncode, "".join(out_chunks), "".join(err_chunks),
                   time.monotonic() - started, usage.ru_maxrss / 1024)

    def run(self, *extra: str) -> Run:
        started = time.monotonic()
        return self.finish(self.start(*extra), started)

    def wait_for_build(self, name: str = "fm_slow", timeout: float = 300) -> None:
        """Until an attempt log of `name` exists: its build is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if list((self.cache / "logs").glob(f"{name}-*attempt*.log")):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the build of {name} did not start within {timeout:g} s")


def processes_of(paths: list[Path], marker: str) -> dict[int, str]:
    """Live processes naming one of `paths` (command line or working folder) or `marker`."""
    return live_processes(roots=paths, markers=(marker,))


def wait_gone(paths: list[Path], marker: str, within: float = GONE_WITHIN) -> tuple[float, dict]:
    """Seconds until no process of the run is left (or `within`), and what is left."""
    start = time.monotonic()
    left = processes_of(paths, marker)
    while left and time.monotonic() - start < within:
        time.sleep(0.2)
        left = processes_of(paths, marker)
    return time.monotonic() - start, left


def kill_left(paths: list[Path], marker: str) -> None:
    kill_all(processes_of(paths, marker))


# ---------------------------------------------------------------------------- comparison


def state_of(out: Path) -> dict[str, tuple[str, str]]:
    """name -> (status, sha256 of its output wheel as found on disk, or "")."""
    manifest = json.loads((out / "manifest.json").read_text())
    state = {}
    for e in manifest["entries"]:
        wheel = out / e["wheel"] if e.get("wheel") else None
        digest = ""
        if wheel is not None and wheel.is_file():
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        state[e["name"]] = (e["status"], digest)
    return state


def mismatches(out: Path, reference: dict) -> list[str]:
    """How `out` differs from the clean run: manifest statuses, wheel bytes, stray wheels."""
    try:
        state = state_of(out)
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        return [f"no readable manifest: {exc}"]
    bad = [f"{n}: {state.get(n)} != {want}" for n, want in reference.items()
           if state.get(n) != want]
    bad += [f"{n}: not in the clean run" for n in state if n not in reference]
    listed = {e["wheel"] for e in manifest["entries"] if e.get("wheel")}
    on_disk = {p.name for p in out.glob("*.whl")}
    bad += [f"{w}: in the output, not in the manifest" for w in sorted(on_disk - listed)]
    for e in manifest["entries"]:
        if e.get("wheel") and e.get("sha256") and e["name"] in state:
            if state[e["name"]][1] and state[e["name"]][1] != e["sha256"]:
                bad.append(f"{e['wheel']}: output differs from its manifest's sha256")
    return bad


# ---------------------------------------------------------------------------- the matrix


@dataclass
class Result:
    fault: str
    ok: bool
    detail: str
    seconds: float
    figures: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, fault: str, problems: list[str], passed: str, seconds: float,
           figures: dict[str, float] | None = None) -> Result:
        """Passed (`passed` says how) when no problem was found, else failed naming them."""
        return cls(fault, not problems, "; ".join(problems) or passed, seconds, figures or {})


class Matrix:
    def __init__(self, work: Path, noise_mib: int) -> None:
        self.work = work
        self.marker = f"refinery-fault-escapee-{uuid.uuid4().hex[:10]}"
        self.inp, index_root = prepare(work / "fixtures", noise_mib, self.marker)
        self.index = Index(index_root)
        self.env = bench_env()
        self.reference: dict[str, tuple[str, str]] = {}
        self.cases = 0
        self.warm: Case | None = None

    def case(self, name: str) -> Case:
        self.cases += 1
        return Case(self.work / f"{self.cases:02d}-{name}", self.index, self.inp, self.env,
                    self.marker)

    # checks shared by every run

    def after(self, case: Case, run: Run, problems: list[str], *, want_rc: int | None = 0,
              match: bool = True) -> None:
        """What every run must satisfy: no process left, no traceback, memory bounded; the
        exit status `want_rc`; with `match`, the output equal to the clean run's; and a run
        that exits 0 over an output that does not match its manifest is always a failure."""
        seconds, left = wait_gone([case.root], self.marker, within=5.0)
        if left:
            problems.append(f"{len(left)} process(es) left after the run: "
                            + "; ".join(sorted(left.values()))[:300])
            kill_left([case.root], self.marker)
        if "Traceback" in run.text:
            problems.append("a traceback was printed")
        if run.peak_mb > PEAK_RSS_CAP_MB:
            problems.append(f"peak memory {run.peak_mb:.0f} MiB > {PEAK_RSS_CAP_MB} MiB")
        if want_rc is not None and run.rc != want_rc:
            problems.append(f"exit {run.rc}, expected {want_rc}: "
                            + " | ".join(run.lines()[-3:])[:400])
        if match and run.rc == 0:
            problems.extend(mismatches(case.out, self.reference))
        elif run.rc == 0 and (case.out / "manifest.json").exists():
            wrong = [m for m in mismatches(case.out, self.reference) if "sha256" in m
                     or "not in the manifest" in m]
            problems.extend(f"exit 0 over a wrong output: {m}" for m in wrong)

    def one_line(self, run: Run, words: str, problems: list[str]) -> None:
        """The run stopped with a line naming the cause (a message, or its summary's row)."""
        if not any(words in ln for ln in run.text.splitlines()):
            problems.append(f"no line says {words!r}: " + " | ".join(run.lines()[-4:])[:400])

    def noisy_log(self, case: Case, problems: list[str]) -> float:
        logs = list((case.cache / "logs").glob("fm_noisy-*attempt*.log"))
        if not logs:
            return 0.0
        size = max(p.stat().st_size for p in logs) / (1 << 20)
        text = logs[0].read_bytes()
        if b"elided" not in text:
            problems.append(f"the noisy build's log ({size:.1f} MiB) says nothing was elided")
        return size

    # the faults

    def clean(self) -> Result:
        case = self.case("clean")
        run = case.run()
        problems: list[str] = []
        if run.rc == 0:
            self.reference = state_of(case.out)
            want = {"fm-cfast": "built", "fm-slow": "built", "fm-noisy": "built",
                    "fm-escape": "built", "fm-pure": "reused"}
            got = {n: s for n, (s, _) in self.reference.items()}
            if got != want:
                problems.append(f"statuses {got}")
        self.after(case, run, problems, match=False)
        log_mb = self.noisy_log(case, problems)
        self.warm = case
        return Result.of("clean run (the reference)", problems, "4 built, 1 reused", run.seconds,
                         {"peak_rss_mb": run.peak_mb, "noisy_log_mb": log_mb})

    def _warm(self) -> Case:
        assert self.warm is not None, "the clean run comes first"
        return self.warm

    def _repair(self, title: str, damage: Callable[[Case], str], *extra: str) -> Result:
        """Damage the clean run's state, run again (plainly, or with `extra`): the output is
        the clean one's again, and the damage was named."""
        case = self._warm()
        words = damage(case)
        run = case.run(*extra)
        problems: list[str] = []
        self.after(case, run, problems)
        if words:
            haystack = run.stderr + "".join(
                p.read_text(errors="replace") for p in (case.cache).rglob("build_wheel/*.log"))
            if words not in haystack:
                problems.append(f"the damage was not named ({words!r})")
        return Result.of(title, problems, f"repaired: {words}", run.seconds,
                         {"peak_rss_mb": run.peak_mb})

    def corrupt_sdist(self) -> Result:
        def damage(case: Case) -> str:
            sdist = case.cache / "downloads" / "fm_cfast-1.0.tar.gz"
            data = bytearray(sdist.read_bytes())
            data[len(data) // 2: len(data) // 2 + 32] = b"\0" * 32
            sdist.write_bytes(bytes(data))
            return "does not match its sha256"
        return self._repair("corrupt cached sdist, --rebuild", damage, "--rebuild", "fm-cfast")

    def delete_wheel(self) -> Result:
        def damage(case: Case) -> str:
            next(case.out.glob("fm_cfast-*.whl")).unlink()
            return "does not match its manifest"
        return self._repair("output wheel deleted", damage)

    def change_wheel(self) -> Result:
        def damage(case: Case) -> str:
            wheel = next(case.out.glob("fm_slow-*.whl"))
            with open(wheel, "r+b") as fh:
                fh.seek(40)
                fh.write(b"XXXX")
            return "does not match its manifest"
        return self._repair("output wheel changed in place", damage)

    def corrupt_history(self) -> Result:
        def damage(case: Case) -> str:
            db = case.cache / "history.db"
            data = db.read_bytes()
            db.write_bytes(data[: len(data) // 2])
            for extra in ("-wal", "-shm"):
                Path(f"{db}{extra}").unlink(missing_ok=True)
            return "is damaged"
        return self._repair("history.db truncated", damage)

    def corrupt_manifest(self) -> Result:
        def damage(case: Case) -> str:
            (case.out / "manifest.json").write_text("{garbage")
            return "is not a manifest"
        return self._repair("manifest.json garbage", damage)

    def _killed(self, title: str, sig: int, want_rc: int | None) -> Result:
        """A fresh run signalled at its own PID alone mid-build: every process of it ends,
        and the next run (plain) ends like the clean one."""
        case = self.case(f"sig{sig}")
        started = time.monotonic()
        proc = case.start()
        problems: list[str] = []
        figures: dict[str, float] = {}
        try:
            case.wait_for_build()
        except RuntimeError as exc:
            proc.kill()
            return Result(title, False, str(exc), time.monotonic() - started)
        sent = time.monotonic()
        os.kill(proc.pid, sig)
        first = case.finish(proc, started)
        figures["exit_after_s"] = time.monotonic() - sent
        gone, left = wait_gone([case.root], self.marker)
        figures["all_gone_after_s"] = gone + figures["exit_after_s"]
        if left:
            problems.append(f"{len(left)} process(es) still running {GONE_WITHIN:g} s after "
                            "the signal: " + "; ".join(sorted(left.values()))[:300])
            kill_left([case.root], self.marker)
        if want_rc is not None and first.rc != want_rc:
            problems.append(f"the signalled run exited {first.rc}, expected {want_rc}")
        if "Traceback" in first.text:
            problems.append("the signalled run printed a traceback")
        slow_logs = list((case.cache / "logs").glob("fm_slow-*attempt*.log"))
        if any(b"exit code 0" in p.read_bytes() for p in slow_logs):
            problems.append("the build it was running went on to finish")
        again = case.run()
        self.after(case, again, problems)
        figures["rerun_s"] = again.seconds
        return Result.of(title, problems, f"exit {first.rc}; rerun identical", first.seconds,
                         figures)

    def sigkill(self) -> Result:
        return self._killed("kill -9 <refinery pid>", signal.SIGKILL, -signal.SIGKILL)

    def sigint(self) -> Result:
        return self._killed("kill -INT <refinery pid>", signal.SIGINT, 130)

    def sigterm(self) -> Result:
        return self._killed("kill -TERM <refinery pid>", signal.SIGTERM, None)

    def index_down(self) -> Result:
        case = self.case("index-down")
        with self.index.failing("down"):
            down = case.run()
        problems: list[str] = []
        self.after(case, down, problems, want_rc=1, match=False)
        self.one_line(down, "index-unreachable", problems)
        up = case.run()
        self.after(case, up, problems)
        return Result.of("index down, then back", problems,
                         "named index-unreachable; next run identical", down.seconds + up.seconds)

    def flaky_index(self) -> Result:
        case = self.case("flaky-index")
        with self.index.failing("flaky"):
            run = case.run()
        problems: list[str] = []
        self.after(case, run, problems)
        return Result.of("flaky index (503, dropped connections)", problems,
                         "retried; identical in one run", run.seconds)

    def concurrent(self) -> Result:
        case = self.case("concurrent")
        started = time.monotonic()
        first = case.start()
        problems: list[str] = []
        try:
            case.wait_for_build()
        except RuntimeError as exc:
            first.kill()
            return Result("two runs on one cache", False, str(exc), 0.0)
        config = case.cache / "workflow" / "refinery-config.yaml"
        before = config.read_bytes() if config.exists() else b""
        second = case.run("--jobs", "1")
        if second.rc != 2:
            problems.append(f"the second run exited {second.rc}, expected 2")
        if "Traceback" in second.text or len(second.lines()) != 1:
            problems.append("the second run did not stop with one line: "
                            + " | ".join(second.lines())[:300])
        if config.exists() and config.read_bytes() != before:
            problems.append("the refused run rewrote the running one's configuration")
        run = case.finish(first, started)
        self.after(case, run, problems)
        return Result.of("two runs on one cache", problems,
                         "second refused in one line; first identical", run.seconds)

    def disk_full(self) -> Result:
        title = "output disk full"
        if os.geteuid() != 0 or not shutil.which("mount"):
            return Result(title, True, "skipped: needs root to mount a small tmpfs", 0.0)
        case = self.case("disk-full")
        case.out.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(case.out)],
                       check=True)
        try:
            full = case.run()
        finally:
            subprocess.run(["umount", str(case.out)], check=True)
        problems: list[str] = []
        self.after(case, full, problems, want_rc=None, match=False)
        if full.rc == 0:
            problems.append("exit 0 on a full output disk")
        self.one_line(full, "No space left on device", problems)
        again = case.run()
        self.after(case, again, problems)
        return Result.of(title, problems, "named 'No space left on device'; next run identical",
                         full.seconds + again.seconds)

    def close(self) -> None:
        self.index.close()
        kill_left([self.work], self.marker)


FAULTS = {
    "clean": Matrix.clean,
    "corrupt-sdist": Matrix.corrupt_sdist,
    "delete-wheel": Matrix.delete_wheel,
    "change-wheel": Matrix.change_wheel,
    "corrupt-history": Matrix.corrupt_history,
    "corrupt-manifest": Matrix.corrupt_manifest,
    "kill": Matrix.sigkill,
    "interrupt": Matrix.sigint,
    "terminate": Matrix.sigterm,
    "index-down": Matrix.index_down,
    "flaky-index": Matrix.flaky_index,
    "concurrent": Matrix.concurrent,
    "disk-full": Matrix.disk_full,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated faults (the clean run always comes first): "
                    + ", ".join(FAULTS))
    ap.add_argument("--noise-mb", type=int, default=200,
                    help="what the noisy build prints (more than the 8 MiB a log keeps, so the "
                    "cap shows)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--workdir", type=Path, help="work here (default: a temporary folder)")
    args = ap.parse_args(argv)
    chosen = ["clean", *[f for f in (args.only.split(",") if args.only else FAULTS)
                         if f != "clean"]]
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown:
        ap.error(f"unknown fault(s): {', '.join(unknown)}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="refinery-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    matrix = Matrix(work, args.noise_mb)
    results: list[Result] = []
    try:
        for name in chosen:
            print(f"... {name}", file=sys.stderr, flush=True)
            result = FAULTS[name](matrix)
            results.append(result)
            print(f"{'ok  ' if result.ok else 'FAIL'} {result.fault}: {result.detail}",
                  file=sys.stderr, flush=True)
            if name == "clean" and not result.ok:
                break
    finally:
        matrix.close()
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    width = max(len(r.fault) for r in results)
    print(f"\n{'fault':<{width}}  result  time     figures / detail")
    for r in results:
        figs = ", ".join(f"{k} {v:.1f}" for k, v in r.figures.items())
        print(f"{r.fault:<{width}}  {'pass' if r.ok else 'FAIL':<6}  {r.seconds:6.1f}s  "
              f"{figs}{' | ' if figs else ''}{r.detail}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n")
    failed = [r.fault for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} of {len(results)} faults pass"
          + (f"; failing: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
