"""Figure 7: latency of the panel over a big history.

    python bench/panel_bench.py DB [--events 1000000] [--requests 200] [--seconds 40]
    python bench/panel_bench.py DB --clients 16 [--seconds 60]      # concurrent mode

Writes DB (a real SQLite file with the events and runs tables, and their indexes, of the
schema's current version, through `History.bulk_load`) with synthetic events, starts `refinery
serve` on 127.0.0.1, and measures a bounded, closed load loop (one client, keep-alive, one
request at a time: latency, not throughput) per path: at most `--requests` requests or
`--seconds` seconds, after two warm-up requests. `/healthz` (no database, no template) is the
floor: what any request to this server costs. Prints one JSON object with p50/p95/max per
path.

Concurrent mode (`--clients N`, figure 7c): N clients at once, each a keep-alive connection
in a thread of its own, each going round every GET page and API of the panel (`GET_PATHS`,
listed from the app's routes: path parameters filled with the package with most failures)
in its own random order, `/healthz` among them, for `--seconds`; a request that is not
answered 200 counts as an error. One warm-up round of every path first (one client), so
every page's first computation for this history is paid before the clock starts. Prints
p50/p95/max per path and the errors, as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from refinery_lib.history import History

#: share of each status among the events (attempts and outcomes of real runs are like this)
STATUS_MIX = {
    "reused": 0.40, "attempt": 0.20, "built": 0.12, "cached": 0.08, "failed": 0.08,
    "fetched": 0.06, "missing": 0.03, "skipped": 0.02, "invalid": 0.01,
}
VARIANTS = ("isolated", "no-isolation", "legacy-toolchain", "conservative-flags")
PATHS = ("/", "/api/top-failures")
FLOOR_PATH = "/healthz"
#: the goal of #16 item 9, for every page and API at 16 concurrent clients
GOAL_P95_MS = 100.0
#: the package every package-shaped path names: pkg-00000 has the most failures (the skewed
#: pick in generate), the heaviest package page there is
BENCH_PACKAGE, BENCH_VERSION = "pkg-00000", "1.0"
#: GET routes left out of the concurrent mode: files (plotly.js is 3.6 MB of one static
#: file), the live log stream (a long-lived response), the raw log (404: the synthetic
#: history has no log files), the header form's redirect
SKIP_PREFIXES = ("/vendor/", "/static", "/redoc/logo-mini.svg")
SKIP_SUFFIXES = ("/stream", "/raw")
SKIP_PATHS = ("/package/",)


def _metadata(status: str, duration: float, variant: str, attempt: int, ok: bool,
              rss: float) -> str:
    """An event's metadata as `History.record` writes it (json.dumps, sorted keys)."""
    if status == "built":
        return (f'{{"attempt": {attempt}, "duration": {duration!r}, "max_rss_mb": {rss!r}, '
                f'"variant": "{variant}"}}')
    if status == "attempt":
        return (f'{{"attempt": {attempt}, "duration": {duration!r}, '
                f'"ok": {"true" if ok else "false"}, "variant": "{variant}"}}')
    if status == "failed":
        return f'{{"attempt": {attempt}, "duration": {duration!r}, "variant": "{variant}"}}'
    if status in ("reused", "fetched", "cached"):
        return '{"tags": ["py3-none-any"]}'
    return "{}"


def generate(db: Path, events: int, packages: int = 5000, runs: int = 2000,
             days: float = 120.0, seed: int = 7) -> float:
    """`events` synthetic events over `packages` packages and `runs` runs; returns seconds.
    The random columns are drawn with numpy at once, the rows written by `History.bulk_load`
    (one transaction, the indexes made after: a million events, about 20 s)."""
    import numpy as np

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    now = time.time()
    statuses = list(STATUS_MIX)
    weights = np.array(list(STATUS_MIX.values()))
    status = rng.choice(len(statuses), size=events, p=weights / weights.sum())
    # failures concentrate on a few hundred packages, as they do: a skewed pick for them
    failed = status == statuses.index("failed")
    pkg = np.where(failed, (min(packages, 500) * rng.random(events) ** 2).astype(np.int64),
                   rng.integers(0, packages, events))
    run = rng.integers(0, runs, events)
    ts = now - days * 86400 * (1 - run / runs) + rng.random(events) * 3600
    columns = zip(status.tolist(), pkg.tolist(), run.tolist(), ts.tolist(),
                  np.round(rng.lognormal(3.0, 1.2, events), 3).tolist(),
                  rng.integers(0, len(VARIANTS), events).tolist(),
                  rng.integers(1, 4, events).tolist(), (rng.random(events) < 0.7).tolist(),
                  np.round(rng.uniform(80, 2000, events), 1).tolist(), strict=True)
    names = [f"pkg-{i:05d}" for i in range(packages)]
    failing = "attempt 1 (isolated) failed (exit 1): error: command 'gcc' failed"

    def rows() -> Iterator[tuple]:
        for i, (st, p, r, t, duration, variant, attempt, ok, rss) in enumerate(columns):
            name = statuses[st]
            yield (f"{i:032x}", f"run-{r:05d}", t, names[p], "1.0", "cp311",
                   "manylinux2014_s390x", name,
                   failing if name in ("failed", "attempt") else "",
                   _metadata(name, duration, VARIANTS[variant], attempt, ok, rss))

    # rows in History.EVENT_COLUMNS and RUN_COLUMNS order
    History.bulk_load(db, rows(), ((f"run-{r:05d}", now - days * 86400 * (1 - r / runs), None,
                                    "cp311", "manylinux2014_s390x", "{}") for r in range(runs)))
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(db: Path, env: dict[str, str] | None = None, timeout: float = 60.0):
    """`refinery serve` on a free loopback port; yields the port; stopped (by its pid) after."""
    port = free_port()
    log = open(db.parent / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "refinery_lib.cli", "serve", "--db", str(db), "--port", str(port),
         "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _ = request(port, FLOOR_PATH)
                if status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"refinery serve did not start; see {db.parent / 'serve.log'}")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def request(port: int, path: str, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body
    finally:
        if own:
            conn.close()


def load(port: int, path: str, max_requests: int, max_seconds: float) -> dict:
    """Closed loop, one connection: latency of each request, in milliseconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    first = []  # the warm-ups: the first one computes what later requests find cached
    for _ in range(2):
        t = time.perf_counter()
        status, _ = request(port, path, conn)
        first.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
    lat: list[float] = []
    stop = time.monotonic() + max_seconds
    while len(lat) < max_requests and time.monotonic() < stop:
        t = time.perf_counter()
        status, body = request(port, path, conn)
        lat.append((time.perf_counter() - t) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
    conn.close()
    return {"path": path, "requests": len(lat), "p50": percentile(lat, 50),
            "p95": percentile(lat, 95), "max": max(lat), "bytes": len(body), "first": first[0]}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a p95 is a latency that happened)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def get_paths() -> list[str]:
    """Every GET page and API of the panel, from the app's routes (path parameters filled)."""
    from web.app import create_app
    from web.settings import PanelSettings

    app = create_app(PanelSettings(Path("/nonexistent/history.db"), Path("/nonexistent/q.json"),
                                   Path("/nonexistent/logs")))
    found: list[str] = []

    def walk(routes) -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)  # FastAPI's included routers
            if inner is not None:
                walk(inner.routes)
                continue
            path, methods = getattr(r, "path", ""), getattr(r, "methods", None) or set()
            if ("GET" not in methods or path.startswith(SKIP_PREFIXES)
                    or path.endswith(SKIP_SUFFIXES) or path in SKIP_PATHS):
                continue
            found.append(path.replace("{name}", BENCH_PACKAGE)
                         .replace("{version}", BENCH_VERSION))

    walk(app.routes)
    return list(dict.fromkeys(found))


def concurrent(port: int, paths: list[str], clients: int, seconds: float,
               seed: int = 11) -> dict:
    """`clients` threads, each a keep-alive connection going round `paths` in its own random
    order until `seconds` are up. Latencies in ms per path; errors counted, never raised."""
    # warm-up: one round of every path, one client (what the first view of each costs)
    first: dict[str, float] = {}
    warm_errors: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for path in paths:
        t = time.perf_counter()
        try:
            status, _ = request(port, path, conn)
        except (OSError, http.client.HTTPException) as exc:
            status = repr(exc)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        first[path] = (time.perf_counter() - t) * 1000
        if status != 200:
            warm_errors[path] = str(status)
    conn.close()
    lat: dict[str, list[float]] = {p: [] for p in paths}
    errors: dict[str, list[str]] = {p: [] for p in paths}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        rng = random.Random(seed + i)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[tuple[str, float, str | None]] = []
        start.wait()
        order = list(paths)
        while time.monotonic() < stop_at[0]:
            rng.shuffle(order)
            for path in order:
                if time.monotonic() >= stop_at[0]:
                    break
                t = time.perf_counter()
                problem = None
                try:
                    status, _ = request(port, path, conn)
                    if status != 200:
                        problem = f"HTTP {status}"
                except (OSError, http.client.HTTPException) as exc:
                    problem = repr(exc)
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                mine.append((path, (time.perf_counter() - t) * 1000, problem))
        conn.close()
        with lock:
            for path, ms, problem in mine:
                lat[path].append(ms)
                if problem:
                    errors[path].append(problem)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(seconds + 180)
    wall = time.perf_counter() - began
    per_path = {}
    for path in paths:
        values = lat[path] or [float("nan")]
        per_path[path] = {"requests": len(lat[path]), "errors": len(errors[path]),
                          "p50": percentile(values, 50), "p95": percentile(values, 95),
                          "max": max(values), "first": first[path],
                          "error_sample": errors[path][:3]}
    everything = [ms for path in paths for ms in lat[path]] or [float("nan")]
    return {"clients": clients, "seconds": wall, "paths": per_path,
            "requests": len(everything), "errors": sum(len(e) for e in errors.values()),
            "warmup_errors": warm_errors, "p50": percentile(everything, 50),
            "p95": percentile(everything, 95), "max": max(everything),
            "throughput": len(everything) / wall if wall else 0.0}


def concurrent_report(result: dict, floor_path: str = FLOOR_PATH,
                      goal: float = GOAL_P95_MS) -> str:
    """A table: per path p50/p95/max, errors, p95 against the goal and the /healthz floor."""
    floor = result["paths"].get(floor_path, {}).get("p95") or float("nan")
    lines = [f"{result['clients']} clients, {result['seconds']:.0f} s, {result['requests']} "
             f"requests ({result['throughput']:.0f}/s), {result['errors']} errors; "
             f"floor {floor_path} p95 {floor:.1f} ms; goal p95 <= {goal:.0f} ms",
             f"{'path':40} {'n':>6} {'err':>4} {'p50':>8} {'p95':>8} {'max':>8} "
             f"{'first':>8} {'p95/floor':>9}  goal"]
    for path, r in sorted(result["paths"].items(), key=lambda kv: -kv[1]["p95"]):
        ok = r["p95"] <= goal and r["errors"] == 0
        lines.append(f"{path:40} {r['requests']:6d} {r['errors']:4d} {r['p50']:8.1f} "
                     f"{r['p95']:8.1f} {r['max']:8.1f} {r['first']:8.1f} "
                     f"{r['p95'] / floor:9.1f}  {'PASS' if ok else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db", type=Path, help="history database to write (replaced)")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--requests", type=int, default=200, help="at most this many per path")
    p.add_argument("--seconds", type=float, default=40.0, help="at most this long per path")
    p.add_argument("--reuse-db", action="store_true", help="keep DB if it exists")
    p.add_argument("--clients", type=int, default=0,
                   help="concurrent mode: this many clients at once over every GET page and "
                        "API for --seconds (the goal's load is 16)")
    args = p.parse_args(argv)
    gen = 0.0
    if not (args.reuse_db and args.db.exists()):
        gen = generate(args.db, args.events)
    out: dict = {"events": args.events, "generate_s": gen, "paths": {}}
    if args.clients:
        paths = get_paths()
        with serve(args.db.resolve(), dict(os.environ)) as port:
            out.update(concurrent(port, paths, args.clients, args.seconds))
        print(concurrent_report(out), file=sys.stderr)
        print(json.dumps(out))
        return 0 if out["errors"] == 0 and all(
            r["p95"] <= GOAL_P95_MS for r in out["paths"].values()) else 1
    with serve(args.db.resolve(), dict(os.environ)) as port:
        out["paths"][FLOOR_PATH] = load(port, FLOOR_PATH, args.requests, args.seconds)
        for path in PATHS:
            out["paths"][path] = load(port, path, args.requests, args.seconds)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
