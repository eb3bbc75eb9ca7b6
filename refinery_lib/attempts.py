"""Attempt policy: backoff between attempts and the variant order learned from history."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .history import ReadOnlyHistory


@dataclass(frozen=True)
class Variant:
    """A named way of building: isolation, pinned build tools, compiler flags."""

    name: str
    isolation: bool = True
    constraints: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, name: str, data: dict[str, Any]) -> Variant:
        return cls(
            name=name,
            isolation=bool(data.get("isolation", True)),
            constraints=tuple(data.get("constraints", ())),
            env={k: str(v) for k, v in (data.get("env") or {}).items()},
        )


@dataclass(frozen=True)
class AttemptPolicy:
    max_attempts: int = 3
    timeout: float | None = 3600.0
    backoff_base: float = 5.0
    backoff_max: float = 300.0

    def backoff(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt n (1-based) failed: base × 2^(n-1), capped."""
        if failed_attempt < 1:
            raise ValueError("attempts count from 1")
        return min(self.backoff_max, self.backoff_base * 2 ** (failed_attempt - 1))


def variant_stats(history_db: Path, package: str) -> dict[str, tuple[int, int]]:
    """Per variant: (successful attempts, attempts) of one package, from the history."""
    if not history_db.exists():
        return {}
    try:
        attempts = ReadOnlyHistory(history_db, timeout=30).attempt_metadata(package)
    except sqlite3.Error:
        return {}
    stats: dict[str, list[int]] = {}
    for meta in attempts:
        variant = meta.get("variant")
        if not variant or meta.get("dependency_missing") or meta.get("system_missing") \
                or meta.get("cross_specific"):
            continue
        entry = stats.setdefault(variant, [0, 0])
        entry[0] += 1 if meta.get("ok") else 0
        entry[1] += 1
    return {k: (v[0], v[1]) for k, v in stats.items()}


def order_variants(
    configured: Sequence[str], stats: dict[str, tuple[int, int]], override: Sequence[str] = ()
) -> list[str]:
    """A package's override wins; else config order re-ranked by smoothed past success rate.

    The rate is (successes + 0.5) / (attempts + 1): an untried variant scores 0.5, so one that
    worked before comes first and one that only ever failed drops behind the untried ones.
    Ties keep the config order (sorting is stable).
    """
    if override:
        return list(dict.fromkeys(override))

    def rate(name: str) -> float:
        ok, total = stats.get(name, (0, 0))
        return (ok + 0.5) / (total + 1)

    return sorted(dict.fromkeys(configured), key=lambda n: -rate(n))


def variant_for_attempt(order: Sequence[str], attempt: int) -> str:
    return order[(attempt - 1) % len(order)]
