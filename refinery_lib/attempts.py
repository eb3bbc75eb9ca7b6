"""Attempt policy: backoff between attempts and the variant order learned from history.

What each attempt leaves in the history, and the policy reads back, is an `AttemptMeta`: the
metadata of an `attempt` event, stored as JSON (`to_json`/`from_json`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
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


class BuildEnvKind(StrEnum):
    """How an attempt installed its build environment, as the history stores it (`build_env`
    of an attempt event): the warm-up's shared environment, its own made offline from the warm
    folder, or its own from the index. A covered build tries them in this order."""

    SHARED = "shared"
    OFFLINE = "offline"
    ONLINE = "online"


@dataclass(frozen=True)
class EarlierTry:
    """A try of an attempt whose build environment lacked requirements: set aside, and the
    attempt ran again the next way. Stored in the attempt's metadata as `<kind>_missing`,
    `<kind>_log` and `<kind>_duration`."""

    kind: BuildEnvKind
    missing: tuple[str, ...]
    log_path: str
    duration: float


@dataclass(frozen=True)
class AttemptMeta:
    """The metadata of one attempt event: written by the build (build.py) for every attempt,
    read back from the history by the attempt policy (`variant_stats`). An older row without
    a key reads as that field's default."""

    attempt: int
    variant: str
    ok: bool
    exit_code: int | None = None
    timed_out: bool = False
    #: seconds, the earlier tries included
    duration: float = 0.0
    log_path: str = ""
    build_env: BuildEnvKind = BuildEnvKind.ONLINE
    builder: str = ""
    earlier: tuple[EarlierTry, ...] = ()
    #: the hints matched in the log (`hints.Hint.to_json`)
    hints: tuple[dict[str, Any], ...] = ()
    #: a missing Python dependency or system package says nothing about the variant
    dependency_missing: bool = False
    system_missing: bool = False
    #: a cross-specific failure neither: the same variant runs again in the container builder
    cross_specific: bool = False
    #: seconds waited before the next attempt; None when none follows (a success, a fatal
    #: failure, an extra attempt with suggestions from hints)
    backoff: float | None = None

    @property
    def counts_for_variant(self) -> bool:
        """Whether this attempt tells how well its variant builds this package."""
        return bool(self.variant) and not (
            self.dependency_missing or self.system_missing or self.cross_specific
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "attempt": self.attempt,
            "variant": self.variant,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "duration": self.duration,
            "log_path": self.log_path,
            "build_env": str(self.build_env),
            "builder": self.builder,
        }
        for t in self.earlier:
            data |= {f"{t.kind}_missing": list(t.missing), f"{t.kind}_log": t.log_path,
                     f"{t.kind}_duration": t.duration}
        data |= {
            "hints": [dict(h) for h in self.hints],
            "dependency_missing": self.dependency_missing,
            "system_missing": self.system_missing,
            "cross_specific": self.cross_specific,
        }
        if self.backoff is not None:
            data["backoff"] = self.backoff
        return data

    @classmethod
    def from_json(cls, data: Any) -> AttemptMeta:
        """An attempt event's stored metadata; ValueError when it is not one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"attempt metadata is a mapping, not {type(data).__name__}")
        exit_code, backoff = data.get("exit_code"), data.get("backoff")
        return cls(
            attempt=int(data.get("attempt", 0)),
            variant=str(data.get("variant") or ""),
            ok=bool(data.get("ok")),
            exit_code=None if exit_code is None else int(exit_code),
            timed_out=bool(data.get("timed_out")),
            duration=float(data.get("duration", 0.0)),
            log_path=str(data.get("log_path", "")),
            build_env=BuildEnvKind(data.get("build_env", BuildEnvKind.ONLINE)),
            builder=str(data.get("builder", "")),
            earlier=tuple(
                EarlierTry(kind, tuple(data[f"{kind}_missing"]), str(data.get(f"{kind}_log", "")),
                           float(data.get(f"{kind}_duration", 0.0)))
                for kind in BuildEnvKind if f"{kind}_missing" in data
            ),
            hints=tuple(dict(h) for h in data.get("hints", ())),
            dependency_missing=bool(data.get("dependency_missing")),
            system_missing=bool(data.get("system_missing")),
            cross_specific=bool(data.get("cross_specific")),
            backoff=None if backoff is None else float(backoff),
        )


def variant_stats(history_db: Path, package: str) -> dict[str, tuple[int, int]]:
    """Per variant: (successful attempts, attempts) of one package, from the history."""
    if not history_db.exists():
        return {}
    try:
        attempts = ReadOnlyHistory(history_db, timeout=30).attempt_metadata(package)
    except sqlite3.Error:
        return {}
    stats: dict[str, list[int]] = {}
    for stored in attempts:
        try:
            meta = AttemptMeta.from_json(stored)
        except (TypeError, ValueError):
            continue  # not an attempt's metadata: it says nothing
        if not meta.counts_for_variant:
            continue
        entry = stats.setdefault(meta.variant, [0, 0])
        entry[0] += 1 if meta.ok else 0
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
