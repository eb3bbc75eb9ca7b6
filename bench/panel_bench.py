"""Figure 7: latency of the panel over a big history.

    python bench/panel_bench.py DB [--events 1000000] [--requests 200] [--seconds 40]

Writes DB (a real SQLite file with the events and runs tables, and their indexes, exactly as
`refinery_lib.history.SCHEMA` declares them) with synthetic events, starts `refinery serve` on
127.0.0.1, and measures a bounded, closed load loop (one client, keep-alive, one request at a
time: latency, not throughput) per path: at most `--requests` requests or `--seconds` seconds,
after two warm-up requests. `/healthz` (no database, no template) is the floor: what any request
to this server costs. Prints one JSON object with p50/p95/max per path.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from refinery_lib.history import SCHEMA

#: share of each status among the events (attempts and outcomes of real runs are like this)
STATUS_MIX = {
    "reused": 0.40, "attempt": 0.20, "built": 0.12, "cached": 0.08, "failed": 0.08,
    "fetched": 0.06, "missing": 0.03, "skipped": 0.02, "invalid": 0.01,
}
VARIANTS = ("isolated", "no-isolation", "legacy-toolchain", "conservative-flags")
PATHS = ("/", "/api/top-failures")
FLOOR_PATH = "/healthz"


def _statements(schema: str) -> tuple[list[str], list[str]]:
    """Tables first, indexes after the bulk insert (faster), both as the schema says."""
    stmts = [s.strip() for s in schema.split(";") if s.strip()]
    return ([s for s in stmts if not s.upper().startswith("CREATE INDEX")],
            [s for s in stmts if s.upper().startswith("CREATE INDEX")])


def _metadata(rng: random.Random, status: str) -> str:
    if status in ("built", "failed", "attempt"):
        meta = {"duration": round(rng.lognormvariate(3.0, 1.2), 3),
                "variant": rng.choice(VARIANTS), "attempt": rng.randint(1, 3)}
        if status == "attempt":
            meta["ok"] = rng.random() < 0.7
        if status == "built":
            meta["max_rss_mb"] = round(rng.uniform(80, 2000), 1)
        return json.dumps(meta, sort_keys=True)
    if status in ("reused", "fetched", "cached"):
        return '{"tags": ["py3-none-any"]}'
    return "{}"


def generate(db: Path, events: int, packages: int = 5000, runs: int = 2000,
             days: float = 120.0, seed: int = 7) -> float:
    """`events` synthetic events over `packages` packages and `runs` runs; returns seconds."""
    started = time.perf_counter()
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    rng = random.Random(seed)
    tables, indexes = _statements(SCHEMA)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    for s in tables:
        con.execute(s)
    now = time.time()
    statuses, weights = list(STATUS_MIX), list(STATUS_MIX.values())
    # failures concentrate on a few hundred packages, as they do: a skewed pick for them
    names = [f"pkg-{i:05d}" for i in range(packages)]

    def rows() -> Iterator[tuple]:
        for i in range(events):
            status = rng.choices(statuses, weights)[0]
            if status == "failed":
                pkg = names[int(min(packages, 500) * rng.random() ** 2)]
            else:
                pkg = names[rng.randrange(packages)]
            run = rng.randrange(runs)
            ts = now - days * 86400 * (1 - run / runs) + rng.random() * 3600
            detail = "attempt 1 (isolated) failed (exit 1): error: command 'gcc' failed" \
                if status in ("failed", "attempt") else ""
            yield (f"{i:032x}", f"run-{run:05d}", ts, pkg, "1.0", "cp311",
                   "manylinux2014_s390x", status, detail, _metadata(rng, status))

    with con:
        con.executemany(
            "INSERT INTO events (uid, run_id, ts, package, version, python_tag, platform_tag,"
            " status, detail, metadata) VALUES (?,?,?,?,?,?,?,?,?,?)", rows())
        con.executemany(
            "INSERT INTO runs (run_id, started, finished, python_tag, platform_tag, summary)"
            " VALUES (?,?,?,?,?,?)",
            ((f"run-{r:05d}", now - days * 86400 * (1 - r / runs), None, "cp311",
              "manylinux2014_s390x", "{}") for r in range(runs)))
    for s in indexes:
        con.execute(s)
    con.execute("ANALYZE")
    con.commit()
    con.close()
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db", type=Path, help="history database to write (replaced)")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--requests", type=int, default=200, help="at most this many per path")
    p.add_argument("--seconds", type=float, default=40.0, help="at most this long per path")
    p.add_argument("--reuse-db", action="store_true", help="keep DB if it exists")
    args = p.parse_args(argv)
    gen = 0.0
    if not (args.reuse_db and args.db.exists()):
        gen = generate(args.db, args.events)
    out: dict = {"events": args.events, "generate_s": gen, "paths": {}}
    with serve(args.db.resolve(), dict(os.environ)) as port:
        out["paths"][FLOOR_PATH] = load(port, FLOOR_PATH, args.requests, args.seconds)
        for path in PATHS:
            out["paths"][path] = load(port, path, args.requests, args.seconds)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
