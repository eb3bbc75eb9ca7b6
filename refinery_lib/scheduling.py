"""Job priorities and cluster resources of builds, learnt from the history database.

Snakemake does the scheduling: `priority:` orders ready jobs (higher first) and `resources:`
sizes each SLURM job. This module only turns history into those numbers. Statistics of all
packages come from one grouped query per database state and are cached, so the thousands of
calls Snakemake makes while building a DAG are dictionary look-ups.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from packaging.utils import canonicalize_name

from .history import ReadOnlyHistory

Mode = Literal["shortest-first", "fifo", "longest-first"]
MODES: tuple[str, ...] = get_args(Mode)


@dataclass(frozen=True)
class Observed:
    """What history says about one package's builds (all versions, all runs)."""

    builds: int
    avg_duration: float | None  # seconds
    max_duration: float | None  # seconds
    peak_rss_mb: float | None


@dataclass(frozen=True)
class ResourcePolicy:
    """How observations become a SLURM request: margins, floors and the unknown case."""

    default_mem_mb: int = 2048
    default_runtime: int = 60  # minutes
    cpus_per_task: int = 1
    mem_margin: float = 1.5  # times the observed peak
    mem_floor_mb: int = 512
    mem_step_mb: int = 256  # requests rounded up to this
    runtime_margin: float = 2.0  # times the longest observed build (machines differ in load)
    runtime_extra: int = 5  # minutes on top: job start, environment, repair
    runtime_floor: int = 10  # minutes


DEFAULT_POLICY = ResourcePolicy()


def db_state(path: Path) -> tuple[int, ...] | None:
    """Changes when the database does. WAL mode writes the -wal file first; a reader leaves an
    empty one behind, which must not count as a change."""
    try:
        main = path.stat()
    except FileNotFoundError:
        return None
    try:
        wal = os.stat(f"{path}-wal")
    except FileNotFoundError:
        wal = None
    if wal is None or wal.st_size == 0:
        return main.st_mtime_ns, main.st_size
    return main.st_mtime_ns, main.st_size, wal.st_mtime_ns, wal.st_size


@lru_cache(maxsize=8)
def _load(path: str, state: tuple[int, ...]) -> dict[str, Observed]:
    # read-only: scheduling must neither create nor lock the history of a running workflow
    stats = ReadOnlyHistory(Path(path), timeout=60).build_stats()
    return {
        pkg: Observed(
            int(builds),
            None if avg is None else float(avg),
            None if mx is None else float(mx),
            None if rss is None else float(rss),
        )
        for pkg, (builds, avg, mx, rss) in stats.items()
    }


def observations(history_path: Path | str) -> dict[str, Observed]:
    """Build statistics of every package in the history, by canonical name ({} if no DB)."""
    path = Path(history_path).resolve()
    state = db_state(path)
    if state is None:
        return {}
    return _load(str(path), state)


def order_by_duration(
    durations: list[tuple[str, float | None]], mode: Mode = "shortest-first"
) -> list[str]:
    """Names in the order to run them; unknown durations count as the median of known ones.

    Ties keep the input order, so with no history every mode is fifo.
    """
    if mode not in MODES:
        raise ValueError(f"unknown schedule {mode!r}; use one of {', '.join(MODES)}")
    seen: dict[str, float | None] = {}
    for name, duration in durations:
        seen.setdefault(name, duration)
    names = list(seen)
    if mode == "fifo":
        return names
    known = [d for d in seen.values() if d is not None]
    median = statistics.median(known) if known else 0.0
    sign = 1.0 if mode == "shortest-first" else -1.0
    index = {name: i for i, name in enumerate(names)}

    def sort_key(name: str) -> tuple[float, int]:
        duration = seen[name]
        return (sign * (median if duration is None else duration), index[name])

    return sorted(names, key=sort_key)


def build_priorities(
    history_path: Path | str, packages: list[str], mode: Mode = "shortest-first"
) -> dict[str, int]:
    """Snakemake `priority:` per package (higher runs first), from n for the first down to 1.

    shortest-first / longest-first order by observed average build duration (unknown =
    median of the known ones among `packages`); fifo keeps the order of `packages`.
    """
    stats = observations(history_path) if mode != "fifo" else {}
    durations = []
    for name in packages:
        obs = stats.get(canonicalize_name(name))
        durations.append((name, obs.avg_duration if obs else None))
    order = order_by_duration(durations, mode)
    return {name: len(order) - rank for rank, name in enumerate(order)}


def resources_for(
    observed: Observed | None, policy: ResourcePolicy = DEFAULT_POLICY, attempt: int = 1
) -> dict[str, int]:
    """mem_mb, runtime (minutes) and cpus_per_task for one build; grows with Snakemake's
    `attempt` (with --retries) so a build killed for memory or time gets more next time."""
    scale = max(1, attempt)
    mem: float  # MB: observed peak times the margin, then rounded up to mem_step_mb
    if observed is None or observed.peak_rss_mb is None:
        mem = policy.default_mem_mb
    else:
        mem = max(policy.mem_floor_mb, observed.peak_rss_mb * policy.mem_margin)
    mem = math.ceil(mem * scale / policy.mem_step_mb) * policy.mem_step_mb
    if observed is None or observed.max_duration is None:
        runtime = policy.default_runtime
    else:
        runtime = max(
            policy.runtime_floor,
            math.ceil(observed.max_duration * policy.runtime_margin / 60) + policy.runtime_extra,
        )
    return {
        "mem_mb": int(mem),
        "runtime": int(runtime * scale),
        "cpus_per_task": policy.cpus_per_task,
    }


def build_resources(
    history_path: Path | str,
    name: str,
    policy: ResourcePolicy = DEFAULT_POLICY,
    attempt: int = 1,
) -> dict[str, int]:
    """SLURM resources of the build of `name`: observed peak memory and longest duration with a
    margin, the policy's defaults when history knows nothing about it."""
    observed = observations(history_path).get(canonicalize_name(name))
    return resources_for(observed, policy, attempt)
