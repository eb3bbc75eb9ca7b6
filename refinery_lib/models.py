"""Statuses and the records that flow between workflow steps (as JSON files)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from packaging.utils import canonicalize_name

from .errors import UnsafeNameError


class Status(StrEnum):
    REUSED = "reused"
    FETCHED = "fetched"
    BUILT = "built"
    CACHED = "cached"
    FAILED = "failed"
    MISSING = "missing"
    SKIPPED = "skipped"
    INVALID = "invalid"
    # history-only events
    ATTEMPT = "attempt"
    SYSTEM_RECIPE = "system_recipe"


#: statuses that make `refinery` exit non-zero
BAD_STATUSES = frozenset({Status.FAILED, Status.MISSING, Status.INVALID})


class Action(StrEnum):
    REUSE = "reuse"
    FETCH = "fetch"
    BUILD = "build"
    MISSING = "missing"
    SKIP = "skip"


_KEY_RE = re.compile(r"^[a-z0-9_]+-[A-Za-z0-9_.+!]+$")


def node_key(name: str, version: str) -> str:
    """File-name-safe key `name-version` (name with underscores, as in wheel file names)."""
    key = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    if not _KEY_RE.match(key):
        raise UnsafeNameError(f"refusing unsafe package key {key!r}")
    return key


@dataclass(frozen=True)
class WheelRecord:
    """One file of the input folder, as the scan saw it."""

    file: str
    path: str
    valid: bool
    reason: str = ""
    name: str = ""
    version: str = ""
    build_tag: str = ""
    tags: tuple[str, ...] = ()
    requires_dist: tuple[str, ...] = ()
    requires_python: str = ""
    sha256: str = ""
    size: int = 0
    #: "wheel", or "sdist" for a source distribution in the wheelhouse (a build's source)
    kind: str = "wheel"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WheelRecord:
        data = dict(data)
        data["tags"] = tuple(data.get("tags", ()))
        data["requires_dist"] = tuple(data.get("requires_dist", ()))
        return cls(**data)


@dataclass(frozen=True)
class DistFile:
    """A file offered by an index (or cached locally)."""

    filename: str
    url: str
    sha256: str = ""
    requires_python: str = ""
    yanked: bool = False
    metadata_url: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PlanNode:
    """One `name==version` and what the workflow does with it."""

    name: str
    version: str
    action: Action
    key: str
    detail: str = ""
    depth: int = 0
    requirement: str = ""
    needed_by: tuple[str, ...] = ()
    input_files: tuple[str, ...] = ()
    source: dict[str, Any] | None = None
    build_deps: tuple[str, ...] = ()
    fetch_deps: bool = False
    requires_dist: tuple[str, ...] = ()
    fallback_from: str = ""
    #: specifiers every dependent puts on this package (for fallback-latest at build time)
    specifiers: tuple[str, ...] = ()
    #: needed only to build other packages (a requeued build dependency, or a runtime
    #: dependency of one) and asked for by no input and no runtime Requires-Dist of an output
    #: package: fetched or built into the cache for its dependents' builds, never an output
    #: package (not in OUTPUT, the manifest, OUTPUT/simple or the closure check)
    build_only: bool = False

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["action"] = str(self.action)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanNode:
        data = dict(data)
        data["action"] = Action(data["action"])
        for key in ("needed_by", "input_files", "build_deps", "requires_dist", "specifiers"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


@dataclass
class Outcome:
    """What happened to one package: the manifest entry and the events behind it."""

    name: str
    version: str
    status: Status
    path: str = ""
    detail: str = ""
    sha256: str = ""
    wheel: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        """From an outcome record or a manifest entry (whose extra keys are dropped)."""
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["status"] = Status(data["status"])
        return cls(**data)
