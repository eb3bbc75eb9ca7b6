"""The figures of bench/run, one method each; every figure measures its own floor in the run."""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import synth
from common import (
    BENCH,
    Row,
    Timed,
    bench_env,
    breakdown,
    format_breakdown,
    manifest,
    median,
    refinery_argv,
    timed,
)

from refinery_lib.history import AttemptTiming, ReadOnlyHistory

#: no refinery run of the benchmark may take longer than this (seconds)
RUN_TIMEOUT = 1800.0
#: a run longer than this is measured once, shorter ones are repeated (median)
QUICK_ENOUGH = 60.0

FLOOR_SNAKEFILE = """\
# Snakemake's own floor: one rule that touches one file.
rule touch:
    output:
        "done.txt",
    shell:
        "touch {output}"
"""

# figure 5: build sleeps (seconds) of 8 fixture projects; input (= fifo) order is by name and
# differs from the order by duration, and one long build makes the order matter
BUILD_SLEEPS = {"mk-a": 3.0, "mk-b": 0.5, "mk-c": 6.0, "mk-d": 1.0, "mk-e": 12.0, "mk-f": 2.0,
                "mk-g": 1.0, "mk-h": 4.0}
SCHEDULES = ("shortest-first", "fifo", "longest-first")


@dataclass
class Sizes:
    repeat: int  # repetitions of the cheap measurements (median taken)
    small: int  # figure 2: T(small) ...
    big: int  # ... and T(big); figure 3 at big
    scale: tuple[int, ...]  # figure 8
    scan: int  # figure 4
    sleep_factor: float  # figure 5
    events: int  # figure 7
    panel_requests: int
    panel_seconds: float
    closure_cap: float  # seconds: runs above `big` with the closure check are cut off here
    panel_clients: int = 16  # figure 7c: concurrent clients over every page and API (0: off)
    panel_load_seconds: float = 30.0  # figure 7c: how long they ask

    @classmethod
    def full(cls) -> Sizes:
        return cls(5, 100, 2000, (100, 1000, 5000), 10_000, 1.0, 1_000_000, 200, 30.0, 120.0)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(3, 50, 400, (50, 400, 1000), 2_000, 0.3, 100_000, 50, 10.0, 45.0,
                   panel_load_seconds=10.0)


@dataclass
class ReuseRuns:
    """What figures 2, 3 and 8 measure, per wheelhouse size N: the floor script's time, the
    refinery's median cold run with the closure check (`ref`) and without it (`bare`), their
    no-op reruns (`bare_noop` only where the `ref` run was cut off), the runs' traces."""

    floor: dict[int, float] = field(default_factory=dict)
    ref: dict[int, Timed] = field(default_factory=dict)
    bare: dict[int, Timed] = field(default_factory=dict)
    noop: dict[int, float] = field(default_factory=dict)
    bare_noop: dict[int, float] = field(default_factory=dict)
    traces: dict[str, Path | None] = field(default_factory=dict)


class Bench:
    def __init__(self, work: Path, sizes: Sizes, log=print):
        self.work = work
        self.sizes = sizes
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.log = log
        self.fixed: float | None = None  # figure 1's value, the base of figures 3, 6 and 8
        self._traces = 0
        self.empty_index = synth.empty_index(work / "empty-index")
        self._reuse = ReuseRuns()  # figures 2, 3 and 8 share their runs

    # -- helpers ---------------------------------------------------------------------------
    def _dir(self, *parts: str) -> Path:
        d = self.work.joinpath(*parts)
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def _refine(self, inp: Path, base: Path, index_url: str, *extra: str, jobs: int = 2,
                timeout: float = RUN_TIMEOUT, fresh: bool = True, trace: bool = True) -> Timed:
        """One `refinery` run on base/out and base/cache (emptied first when `fresh`)."""
        if fresh:
            shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True, exist_ok=True)
        runs = len(list(base.glob("run*.log")))
        env = bench_env(trace=base / f"trace{runs}.jsonl" if trace else None)
        result = timed(refinery_argv(inp, base / "out", base / "cache", index_url, *extra,
                                     jobs=jobs),
                       env=env, timeout=timeout, log=base / f"run{runs}.log")
        if result.trace is not None and result.trace.exists():
            # kept apart: a fresh run of the same base would overwrite it
            self._traces += 1
            kept = self.work / "traces" / f"{base.name}-{self._traces}.jsonl"
            kept.parent.mkdir(exist_ok=True)
            shutil.move(result.trace, kept)
            result.trace = kept
        if not result.timed_out and result.returncode != 0:
            raise RuntimeError(f"refinery failed (exit {result.returncode}); see "
                               f"{base / f'run{runs}.log'}")
        return result

    def guarded(self, name: str, fn) -> None:
        try:
            fn()
        except Exception as exc:  # a broken figure must not hide the others
            self.log(f"figure {name} failed: {exc!r}")
            traceback.print_exc(file=sys.stderr)
            self.rows.append(Row(name, None, "", ok=False, note=repr(exc),
                                 value_text=f"error: {str(exc)[:60]}"))

    # -- figure 1 --------------------------------------------------------------------------
    def fixed_cost(self) -> None:
        """Refining a 1-wheel wheelhouse vs a one-rule Snakemake workflow touching one file."""
        base = self._dir("fixed")
        house = synth.make_wheelhouse(base / "in", 1, ("pure",))
        snakefile = base / "floor" / "Snakefile"
        snakefile.parent.mkdir()
        snakefile.write_text(FLOOR_SNAKEFILE)

        def floor(i: int) -> Timed:
            d = self._dir("fixed", f"floor-run{i}")
            return timed([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
                          "--directory", str(d), "--cores", "2", "--quiet", "progress",
                          "rules"], env=bench_env(trace=d / "trace.jsonl"), log=d / "run.log")

        self._refine(house.folder, base / "warm", self.empty_index)  # warm: .pyc, page cache
        floor(-1)
        ref, flo = [], []
        for i in range(self.sizes.repeat):  # interleaved: load changes hit both alike
            ref.append(self._refine(house.folder, base / f"run{i}", self.empty_index))
            flo.append(floor(i))
        value = median([r.seconds for r in ref])
        fl = median([f.seconds for f in flo])
        self.fixed = value
        ratio = value / fl
        self.rows.append(Row("1. fixed cost, 1-wheel wheelhouse", value, "s", fl, ratio,
                             "<= 1.50x", ratio <= 1.5))
        mid = sorted(ref, key=lambda r: r.seconds)[len(ref) // 2]
        fmid = sorted(flo, key=lambda r: r.seconds)[len(flo) // 2]
        self.notes.append(format_breakdown(
            f"figure 1 breakdown (the median run, {mid.seconds:.2f} s):", breakdown(mid.trace))
            + "\n" + format_breakdown(f"  its floor (the median run, {fmid.seconds:.2f} s):",
                                      breakdown(fmid.trace)))

    def _need_fixed(self) -> float:
        if self.fixed is None:
            self.guarded("1. fixed cost, 1-wheel wheelhouse", self.fixed_cost)
        if self.fixed is None:
            raise RuntimeError("figure 1 (the base of this figure) failed")
        return self.fixed

    # -- figures 2, 3 and 8: reused wheels at scale -----------------------------------------
    def reuse_scale(self, do2: bool = True, do3: bool = True, do8: bool = True) -> None:
        """Figures 2, 3 and 8 as bench/run asks for them: the runs they share are measured
        first, each wheelhouse size once, smallest first; then each figure's rows."""
        s = self.sizes
        self._need_fixed()
        pair = (s.small, s.big) if (do2 or do3) else ()
        self._reuse_runs({*pair, *(s.scale if do8 else ())})
        for wanted, figure in ((do2, self.marginal_cost), (do3, self.noop_rerun),
                               (do8, self.scale)):
            if wanted:
                figure()

    def _reuse_runs(self, sizes: Iterable[int]) -> ReuseRuns:
        """The shared runs, with those of `sizes` not measured yet measured now."""
        runs = self._reuse
        todo = sorted(set(sizes) - set(runs.floor))
        for n in todo:
            folder = self.work / "reuse" / f"in{n}"
            shutil.rmtree(folder, ignore_errors=True)
            synth.make_wheelhouse(folder, n, ("pure", "abi3"))
        for n in todo:
            self._measure_reuse(n, runs)
        return runs

    def _measure_reuse(self, n: int, runs: ReuseRuns) -> None:
        """At N=n: the floor script, the refinery cold (closure check on, as a user runs it)
        and rerun, and the same with --no-closure-check."""
        s = self.sizes
        inp = self.work / "reuse" / f"in{n}"
        reps = s.repeat if n <= s.small else 3
        times = []
        for _ in range(5):
            out = self._dir("reuse", f"floor{n}")
            times.append(timed([sys.executable, str(BENCH / "floor_reuse.py"), str(inp),
                                str(out)], env=bench_env()).seconds)
        runs.floor[n] = median(times)
        self.log(f"  floor script N={n}: {runs.floor[n]:.2f} s")
        cap = s.closure_cap if n > s.big else RUN_TIMEOUT
        runs.ref[n] = self._cold_median(inp, f"ref{n}", reps, timeout=cap)
        state = "cut off" if runs.ref[n].timed_out else "done"
        self.log(f"  refinery N={n}: {runs.ref[n].seconds:.2f} s ({state})")
        if not runs.ref[n].timed_out:
            runs.noop[n] = self._rerun_median(inp, f"ref{n}")
            self.log(f"  refinery no-op rerun N={n}: {runs.noop[n]:.2f} s")
        runs.traces[f"ref{n}"] = runs.ref[n].trace
        # the same without the closure check: what the rest of the pipeline costs
        runs.bare[n] = self._cold_median(inp, f"bare{n}", reps, "--no-closure-check")
        if n not in runs.noop:
            # the run with the closure check was cut off: rerun the one without it
            runs.bare_noop[n] = self._rerun_median(inp, f"bare{n}", "--no-closure-check")
        runs.traces[f"bare{n}"] = runs.bare[n].trace
        self.log(f"  refinery --no-closure-check N={n}: {runs.bare[n].seconds:.2f} s")

    def _cold_median(self, inp: Path, name: str, reps: int, *extra: str,
                     timeout: float = RUN_TIMEOUT) -> Timed:
        """The median of up to `reps` cold runs into reuse/`name`; one long run (or one cut
        off) is measurement enough, and all the budget allows."""
        done: list[Timed] = []
        for _ in range(reps):
            done.append(self._refine(inp, self.work / "reuse" / name, self.empty_index, *extra,
                                     timeout=timeout))
            if done[-1].timed_out or done[-1].seconds > QUICK_ENOUGH:
                break
        return sorted(done, key=lambda r: r.seconds)[len(done) // 2]

    def _rerun_median(self, inp: Path, name: str, *extra: str) -> float:
        """The median of three no-op reruns on the output and cache of reuse/`name`."""
        return median([self._refine(inp, self.work / "reuse" / name, self.empty_index, *extra,
                                    fresh=False).seconds for _ in range(3)])

    def marginal_cost(self) -> None:
        """Figure 2: the cost of one more reused wheel, (T(big) - T(small)) / (big - small),
        against the floor script's; and the same without the closure check."""
        a, b = self.sizes.small, self.sizes.big
        runs = self._reuse_runs((a, b))
        m, cut = _slope(runs.ref, a, b)
        fm, _ = _slope(runs.floor, a, b)
        methods = {n: _closure_method(self.work / "reuse" / f"ref{n}" / "out") for n in (a, b)}
        text = ""
        if methods[a] != methods[b]:
            text = (f"{m:.2f} ms/wheel (closure check: {methods[a]} at N={a}, "
                    f"{methods[b]} at N={b})")
            self.notes.append(
                f"figure 2: the closure check works differently at N={a} ({methods[a]}) and "
                f"N={b} ({methods[b]}), so T({b}) - T({a}) is not only a per-wheel cost; the "
                "--no-closure-check row measures the rest of the pipeline alone")
        self.rows.append(Row(f"2. marginal cost per reused wheel, N={a}->{b}", m,
                             "ms/wheel", fm, m / fm, "<= 3.00x", (m / fm) <= 3 and not cut,
                             value_text=text))
        bm, _ = _slope(runs.bare, a, b)
        self.rows.append(Row("2. (same, --no-closure-check: rest of the pipeline)", bm,
                             "ms/wheel", fm, bm / fm, "", None))
        self.notes.append(format_breakdown(
            f"figure 2 breakdown: refinery at N={b}, cold ({runs.ref[b].seconds:.1f} s):",
            breakdown(runs.traces[f"ref{b}"])))
        self.notes.append(format_breakdown(
            f"figure 2 breakdown: refinery --no-closure-check at N={b}, cold "
            f"({runs.bare[b].seconds:.1f} s):", breakdown(runs.traces[f"bare{b}"])))

    def noop_rerun(self) -> None:
        """Figure 3: a rerun with nothing to do at N=big, against figure 1."""
        fixed = self._need_fixed()
        n = self.sizes.big
        runs = self._reuse_runs((self.sizes.small, n))
        if n in runs.noop:
            v = runs.noop[n]
            self.rows.append(Row(f"3. no-op rerun, N={n} (floor: figure 1)", v, "s", fixed,
                                 v / fixed, "<= 1.20x", v / fixed <= 1.2))
        else:
            self.rows.append(Row(f"3. no-op rerun, N={n}", None, "s", fixed, None,
                                 "<= 1.20x", False, value_text="no cold run to rerun"))

    def scale(self) -> None:
        """Figure 8: cold runs, marginal costs and no-op reruns over the scale sizes, and
        whether the cost per wheel stays flat over every size measured."""
        fixed = self._need_fixed()
        scale = list(self.sizes.scale)
        runs = self._reuse_runs(scale)
        for n in scale:
            t = runs.ref[n]
            text = f"> {t.seconds:.0f} s (cut off)" if t.timed_out else ""
            self.rows.append(Row(f"8. cold run, N={n}", t.seconds, "s", runs.floor[n],
                                 None if t.timed_out else t.seconds / runs.floor[n], "", None,
                                 value_text=text))
        for tag, series in (("", runs.ref), (" --no-closure-check", runs.bare)):
            for a, b in zip(scale, scale[1:], strict=False):
                m, cut = _slope(series, a, b)
                fm, _ = _slope(runs.floor, a, b)
                text = f"> {m:.2f} ms/wheel (cut off)" if cut else ""
                self.rows.append(Row(f"8. marginal{tag}, N={a}->{b}", m, "ms/wheel", fm,
                                     None if cut else m / fm, "", None, value_text=text))
            self.rows.append(_linearity(tag, series))
        for n in scale:
            if n in runs.noop:
                v, tag = runs.noop[n], ""
            elif n in runs.bare_noop:
                v, tag = runs.bare_noop[n], " (of the --no-closure-check run)"
            else:
                continue
            self.rows.append(Row(f"8. no-op rerun{tag}, N={n} (floor: fig. 1)", v, "s",
                                 fixed, v / fixed, "<= 1.20x", v / fixed <= 1.2))

    # -- figure 4 --------------------------------------------------------------------------
    def scan(self) -> None:
        n = self.sizes.scan
        folder = self.work / "scan" / "in"
        if not folder.is_dir() or len(list(folder.iterdir())) != n:
            shutil.rmtree(folder, ignore_errors=True)
            synth.make_wheelhouse(folder, n, ("pure", "abi3", "foreign"))
        res = timed([sys.executable, str(BENCH / "scan_bench.py"), str(folder)],
                    env=bench_env(), log=self.work / "scan" / "scan.json")
        data = json.loads((self.work / "scan" / "scan.json").read_text().splitlines()[-1])
        if res.returncode != 0 or data["invalid"]:
            raise RuntimeError(f"scan bench failed: {data}")
        rate, floor = data["scan_rate"], data["floor_rate"]
        self.rows.append(Row(f"4. scan, {n:,} wheels (ratio: floor rate / rate)", rate, "/s",
                             floor, floor / rate, ">= 2,000/s", rate >= 2000))

    # -- figure 5 --------------------------------------------------------------------------
    def makespan(self) -> None:
        from tests.fixtures.projects import make_wheel

        base = self._dir("makespan")
        files = base / "index" / "files"
        sleeps = {k: round(v * self.sizes.sleep_factor, 2) for k, v in BUILD_SLEEPS.items()}
        for name, sleep in sleeps.items():
            synth.make_sdist(files, name, "1.0", c_ext=True, build_sleep=sleep)
        index_url = synth.write_index(base / "index", [], tools=True)
        inp = base / "in"
        for name in sleeps:
            make_wheel(inp, name, "1.0", synth.wheel_tag("foreign", synth.host_arch()))
        history = base / "history.db"
        common = ("--history-db", str(history), "--attempt-backoff-base", "0.01",
                  "--attempt-backoff-max", "0.02", "--no-closure-check")
        # closure check off: it runs after the builds, outside the makespan
        learn = self._refine(inp, base / "learn", index_url, *common, "--schedule", "fifo")
        self.log(f"  learning run (fifo): {learn.seconds:.1f} s")
        for mode in SCHEDULES:
            run = self._refine(inp, base / mode, index_url, *common, "--schedule", mode)
            m = manifest(base / mode / "out")
            built = {e["name"]: e["metadata"]["duration"] for e in m["entries"]
                     if e["status"] == "built"}
            if len(built) != len(sleeps):
                raise RuntimeError(f"{mode}: built {sorted(built)} of {sorted(sleeps)}")
            attempts = _attempts(history, m["run_id"])
            starts = sorted((ts - d, pkg) for pkg, ts, d in attempts)
            span = max(ts for _, ts, _ in attempts) - min(st for st, _ in starts)
            durations = list(built.values())
            bound = max(max(durations), sum(durations) / 2)
            ratio = span / bound
            self.rows.append(Row(f"5. build makespan, --jobs 2, --schedule {mode}", span, "s",
                                 bound, ratio, "<= 1.10x", ratio <= 1.10))
            t0 = min(st for st, _ in starts)
            order = ", ".join(f"{pkg}@{st - t0:.1f}s({built[pkg]:.1f}s)" for st, pkg in starts)
            ideal = _list_schedule([built[pkg] for _, pkg in starts], 2)
            self.notes.append(
                f"figure 5, {mode}: run {run.seconds:.1f} s; builds started "
                f"(name@start(duration)): {order}; this start order with no time between "
                f"builds would take {ideal:.1f} s ({ideal / bound:.2f}x the bound): the rest, "
                f"{span - ideal:.1f} s, is time between builds (job start, sdist jobs)")

    # -- figure 6 --------------------------------------------------------------------------
    def build_overhead(self) -> None:
        from tests.fixtures.projects import make_wheel

        fixed = self._need_fixed()
        base = self._dir("overhead")
        sdist = synth.make_sdist(base / "index" / "files", "solo", "1.0", c_ext=True)
        index_url = synth.write_index(base / "index", [], tools=True)
        inp = base / "in"
        make_wheel(inp, "solo", "1.0", synth.wheel_tag("foreign", synth.host_arch()))

        def pip_wheel(i: int) -> Timed:
            d = self._dir("overhead", f"pip{i}")
            return timed([sys.executable, "-m", "pip", "wheel", "--no-deps", "--index-url",
                          index_url, "--wheel-dir", str(d / "wheels"), str(sdist)],
                         env=bench_env(), log=d / "pip.log")

        def refine(i: int) -> Timed:
            return self._refine(inp, base / f"ref{i}", index_url)

        pip_wheel(-1)
        refine(-1)  # warm
        pips, refs = [], []
        for i in range(self.sizes.repeat):
            p = pip_wheel(i)
            if p.returncode != 0:
                raise RuntimeError(f"pip wheel failed; see {base / f'pip{i}' / 'pip.log'}")
            pips.append(p.seconds)
            refs.append(refine(i))
        tp = median(pips)
        tr = median([r.seconds for r in refs])
        ratio = (tr - fixed) / tp
        self.rows.append(Row("6. one build: refinery - fixed cost (fig. 1) vs pip wheel",
                             tr - fixed, "s", tp, ratio, "<= 1.05x", ratio <= 1.05,
                             note=f"refinery run {tr:.2f} s"))
        self.rows.append(Row("6. (the whole refinery run building it)", tr, "s", tp, tr / tp,
                             "", None))
        mid = sorted(refs, key=lambda r: r.seconds)[len(refs) // 2]
        self.notes.append(format_breakdown(
            f"figure 6 breakdown (median refinery run, {mid.seconds:.2f} s; pip wheel "
            f"{tp:.2f} s):", breakdown(mid.trace)))

    # -- figure 9 --------------------------------------------------------------------------
    def cross(self) -> None:
        import cross_bench

        rows = cross_bench.run(self.sizes.repeat, container=True, workdir=self._dir("cross"))
        self.rows.extend(rows)

    # -- figure 7 --------------------------------------------------------------------------
    def panel(self) -> None:
        import panel_bench

        s = self.sizes
        base = self._dir("panel")
        db = base / "history.db"
        gen = panel_bench.generate(db, s.events)
        self.log(f"  {s.events:,} events written in {gen:.1f} s")
        with panel_bench.serve(db, bench_env()) as port:
            floor = panel_bench.load(port, panel_bench.FLOOR_PATH, s.panel_requests,
                                     s.panel_seconds)
            for path in panel_bench.PATHS:
                r = panel_bench.load(port, path, s.panel_requests, s.panel_seconds)
                self.rows.append(Row(f"7. panel {path} p95, {s.events:,} events "
                                     f"({r['requests']} requests)", r["p95"], "ms",
                                     floor["p95"], r["p95"] / floor["p95"], "<= 100 ms",
                                     r["p95"] <= 100))
                self.rows.append(Row(f"7. panel {path} p50", r["p50"], "ms", floor["p50"],
                                     r["p50"] / floor["p50"], "", None))
                # the dashboard is cached per history state: what the first view after a run
                # (new events) costs
                self.rows.append(Row(f"7. panel {path} first request (history just changed)",
                                     r["first"], "ms", floor["p50"], r["first"] / floor["p50"],
                                     "", None))
            if s.panel_clients:
                self._panel_concurrent(port, panel_bench)
        self.notes.append(f"figure 7 floor: GET {panel_bench.FLOOR_PATH} of the same server "
                          f"(no database, no template), {floor['requests']} requests")

    def _panel_concurrent(self, port: int, panel_bench) -> None:
        """Figure 7c: `panel_clients` clients at once over every GET page and API, p95 of
        each against 100 ms and the /healthz floor of the same load; no errors."""
        s = self.sizes
        r = panel_bench.concurrent(port, panel_bench.get_paths(), s.panel_clients,
                                   s.panel_load_seconds)
        floor = r["paths"][panel_bench.FLOOR_PATH]
        head = f"7c. panel, {s.panel_clients} clients, {s.events:,} events:"
        for path, p in sorted(r["paths"].items(), key=lambda kv: -kv[1]["p95"]):
            if path == panel_bench.FLOOR_PATH:
                continue
            self.rows.append(Row(f"{head} {path} p95 ({p['requests']} requests)", p["p95"],
                                 "ms", floor["p95"], p["p95"] / floor["p95"],
                                 f"<= {panel_bench.GOAL_P95_MS:.0f} ms",
                                 p["p95"] <= panel_bench.GOAL_P95_MS and not p["errors"]))
        self.rows.append(Row(f"{head} errors ({r['requests']} requests, "
                             f"{r['throughput']:.0f}/s)", r["errors"], "", None, None, "0",
                             r["errors"] == 0 and not r["warmup_errors"],
                             value_text=str(r["errors"])))
        self.notes.append(panel_bench.concurrent_report(r))


def _seconds(t: Timed | float) -> float:
    return t.seconds if isinstance(t, Timed) else t


def _slope(t: Mapping[int, Timed] | Mapping[int, float], a: int, b: int) -> tuple[float, bool]:
    """ms per wheel between N=a and N=b; True when T(b) is only a lower bound (cut off)."""
    tb = t[b]
    cut = isinstance(tb, Timed) and tb.timed_out
    return (_seconds(tb) - _seconds(t[a])) / (b - a) * 1000, cut


def _linearity(tag: str, series: Mapping[int, Timed]) -> Row:
    """Figure 8's linearity row: the cost per wheel does not grow with N; every completed
    size counts."""
    done = [n for n in sorted(series) if not series[n].timed_out]
    cut_sizes = [n for n in sorted(series) if series[n].timed_out]
    name = f"8. linearity{tag}: last / first marginal over N={'/'.join(map(str, done))}"
    slopes = [_slope(series, a, b)[0] for a, b in zip(done, done[1:], strict=False)]
    if len(slopes) < 2 or min(slopes) <= 0:
        return Row(name, None, "x", goal="<= 1.50", ok=None,
                   value_text="n/a: too few sizes, or noise")
    growth = slopes[-1] / slopes[0]
    note = f" (N={'/'.join(map(str, cut_sizes))} cut off)" if cut_sizes else ""
    return Row(name, growth, "x", None, None, "<= 1.50", growth <= 1.5 and not cut_sizes,
               value_text=f"{growth:.2f}{note}")


def _closure_method(out: Path) -> str:
    """How the manifest in `out` says its closure check was made (pip, packaging, ...)."""
    try:
        closure = manifest(out).get("closure", {})
    except (OSError, ValueError):
        return "?"
    return str(closure.get("method") or ("pip" if closure.get("ok") is not None else "none"))


def _list_schedule(durations: list[float], machines: int) -> float:
    """Makespan of starting jobs in this order, each on the first free machine, no gaps."""
    free = [0.0] * machines
    for d in durations:
        i = free.index(min(free))
        free[i] += d
    return max(free)


def _attempts(history: Path, run_id: str) -> list[AttemptTiming]:
    """(package, end, duration) of every build attempt of one run."""
    return ReadOnlyHistory(history).attempt_timings(run_id)
