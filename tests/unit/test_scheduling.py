"""Priorities and SLURM resources of builds, from a real history database seeded by History."""

from __future__ import annotations

import pytest

from refinery_lib import history as history_mod
from refinery_lib import scheduling
from refinery_lib.history import History, new_event
from refinery_lib.scheduling import (
    Observed,
    ResourcePolicy,
    build_priorities,
    build_resources,
    observations,
    order_by_duration,
    resources_for,
)


def _build(name: str, status: str, duration: float | None, rss: float | None = None, **extra):
    meta = dict(extra)
    if duration is not None:
        meta["duration"] = duration
    if rss is not None:
        meta["max_rss_mb"] = rss
    return new_event(name, "1.0", status, "", **meta)


@pytest.fixture
def history(tmp_path):
    """slow 600 s (two builds), fast 10 s, mid 100 s, numpy 30 s; others never built."""
    path = tmp_path / "cache" / "history.db"
    h = History(path)
    h.record(
        [
            _build("slow", "built", 500.0, rss=1000.0),
            _build("slow", "failed", 700.0, rss=3000.0, timed_out=True),
            _build("fast", "built", 10.0, rss=100.0),
            _build("mid", "built", 100.0),
            _build("numpy", "built", 30.0, rss=800.0),
            # not builds: must not count
            _build("fast", "attempt", 9999.0, rss=99999.0),
            _build("fast", "cached", 9999.0, rss=99999.0),
            new_event("reused-only", "1.0", "reused", "copied"),
            _build("noduration", "failed", None),
        ],
        run_id="seed",
    )
    return path


def test_observations_aggregate_builds_only(history):
    obs = observations(history)
    assert obs["slow"] == Observed(builds=2, avg_duration=600.0, max_duration=700.0,
                                   peak_rss_mb=3000.0)
    assert obs["fast"] == Observed(1, 10.0, 10.0, 100.0)
    assert obs["mid"].peak_rss_mb is None
    assert obs["noduration"] == Observed(0, None, None, None)
    assert "reused-only" not in obs


def test_shortest_first_orders_by_average_duration_unknown_is_median(history):
    # known among these: fast 10, numpy 30, mid 100, slow 600 -> median 65
    packages = ["slow", "newpkg", "mid", "fast", "NumPy", "other_new"]
    prio = build_priorities(history, packages, "shortest-first")
    assert set(prio) == set(packages)  # keyed by the names as given
    assert sorted(prio, key=prio.get, reverse=True) == [
        "fast", "NumPy", "newpkg", "other_new", "mid", "slow"
    ]
    assert sorted(prio.values()) == list(range(1, len(packages) + 1))
    assert all(isinstance(v, int) for v in prio.values())


def test_longest_first_reverses_and_fifo_keeps_input_order(history):
    packages = ["fast", "slow", "newpkg", "mid", "numpy"]  # unknown newpkg: median 65 s
    longest = build_priorities(history, packages, "longest-first")
    assert sorted(longest, key=longest.get, reverse=True) == [
        "slow", "mid", "newpkg", "numpy", "fast"
    ]
    fifo = build_priorities(history, packages, "fifo")
    assert fifo == {"fast": 5, "slow": 4, "newpkg": 3, "mid": 2, "numpy": 1}


def test_ties_keep_input_order(history):
    # unknown = median of fast 10, mid 100, slow 600 = 100, the same as mid
    prio = build_priorities(history, ["newpkg", "slow", "mid", "fast"], "shortest-first")
    assert sorted(prio, key=prio.get, reverse=True) == ["fast", "newpkg", "mid", "slow"]


def test_no_history_means_input_order_in_every_mode(tmp_path):
    missing = tmp_path / "nothing.db"
    for mode in scheduling.MODES:
        assert build_priorities(missing, ["b", "a", "c"], mode) == {"b": 3, "a": 2, "c": 1}
    assert not missing.exists()  # scheduling never creates the database


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="shortest-first"):
        order_by_duration([("a", 1.0)], "random")  # type: ignore[arg-type]


def test_duplicate_names_keep_first_position():
    assert order_by_duration([("a", None), ("b", None), ("a", None)], "fifo") == ["a", "b"]


def test_resources_from_peak_and_longest_build_with_margin(history):
    # peak 3000 MB * 1.5 = 4500 -> 4608 (256 MB steps); longest 700 s * 2 = 1400 s -> 24 min + 5
    assert build_resources(history, "slow") == {"mem_mb": 4608, "runtime": 29, "cpus_per_task": 1}
    # tiny builds get the floors: 512 MB, 10 minutes
    assert build_resources(history, "fast") == {"mem_mb": 512, "runtime": 10, "cpus_per_task": 1}
    # duration known, memory not: default memory, runtime from history
    assert build_resources(history, "mid") == {"mem_mb": 2048, "runtime": 10, "cpus_per_task": 1}
    assert build_resources(history, "NumPy")["mem_mb"] == 1280  # 800 * 1.5 = 1200 -> 1280


def test_resources_defaults_when_unknown(history, tmp_path):
    expected = {"mem_mb": 2048, "runtime": 60, "cpus_per_task": 1}
    assert build_resources(history, "never-built") == expected
    assert build_resources(tmp_path / "absent.db", "slow") == expected
    policy = ResourcePolicy(default_mem_mb=4000, default_runtime=120, cpus_per_task=4)
    assert build_resources(history, "never-built", policy) == {
        "mem_mb": 4096, "runtime": 120, "cpus_per_task": 4
    }


def test_resources_grow_with_attempt():
    obs = Observed(1, 300.0, 300.0, 1000.0)
    first = resources_for(obs)
    second = resources_for(obs, attempt=2)
    assert first == {"mem_mb": 1536, "runtime": 15, "cpus_per_task": 1}
    assert second == {"mem_mb": 3072, "runtime": 30, "cpus_per_task": 1}


def test_new_events_are_seen_without_restarting(history):
    assert build_resources(history, "late")["runtime"] == 60
    History(history).record([_build("late", "built", 3000.0)], run_id="later")
    assert build_resources(history, "late")["runtime"] == 105  # 6000 s -> 100 min + 5


def test_one_query_for_thousands_of_packages(tmp_path, sql_trace):
    path = tmp_path / "history.db"
    n = 3000
    History(path).record(
        [_build(f"pkg{i}", "built", float(i % 97)) for i in range(n)], run_id="bulk"
    )
    queries = sql_trace(history_mod)
    scheduling._load.cache_clear()
    names = [f"pkg{i}" for i in range(n)] + ["unknown"]
    prio = build_priorities(path, names, "shortest-first")
    resources = [build_resources(path, name) for name in names]
    selects = [q for q in queries if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert len(prio) == n + 1 and len(resources) == n + 1
    assert prio["pkg0"] > prio["pkg96"]
