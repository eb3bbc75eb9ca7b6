"""Statuses and the records that flow between workflow steps (as JSON files)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from .errors import RefineryError, UnsafeNameError


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
    """A plan node's key, `name-version` (name with underscores, as in wheel file names): the
    package's id in the plan and the rules' `{key}` wildcard, safe in file names. It is the
    only "key"; what identifies a build, a shared environment or a target library is a
    digest (`BuildIdentity.digest()`, `shared_venvs.env_digest`, `TargetLibrary.digest`)."""
    key = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    if not _KEY_RE.match(key):
        raise UnsafeNameError(f"refusing unsafe package key {key!r}")
    return key


def _record(obj: Any, enum_field: str) -> dict[str, Any]:
    """A dataclass as JSON data, its enum field as plain text."""
    data = dataclasses.asdict(obj)
    data[enum_field] = str(data[enum_field])
    return data


@dataclass(frozen=True)
class WheelRecord:
    """One file of the input folder as the scan saw it: the file, whether it can be used (or
    why not), and the metadata it declares."""

    file: str
    path: str
    valid: bool
    #: "wheel", or "sdist" for a source distribution in the wheelhouse (a build's source)
    kind: str = "wheel"
    sha256: str = ""
    size: int = 0
    reason: str = ""
    name: str = ""
    version: str = ""
    build_tag: str = ""
    tags: tuple[str, ...] = ()
    requires_dist: tuple[str, ...] = ()
    requires_python: str = ""

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
        return _record(self, "action")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanNode:
        data = dict(data)
        data["action"] = Action(data["action"])
        for key in ("needed_by", "input_files", "build_deps", "requires_dist", "specifiers"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


@dataclass(frozen=True)
class InvalidInput:
    """An input file the scan refused, and why."""

    file: str
    path: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """plan.json, the output of the plan checkpoint: every `name==version` and what the
    workflow does with it (in the planner's order), the input files the scan refused, the
    plan's own history events (missing, skipped, invalid) and the indexes that did not
    answer. Every reader of the file reads it with `Plan.from_file`."""

    python: str
    platform_tag: str
    all_nodes: tuple[PlanNode, ...]
    invalid: tuple[InvalidInput, ...] = ()
    events: tuple[dict[str, Any], ...] = ()
    #: indexes that did not answer: such a plan is made again by the next run
    #: (steps.forget_unreachable_plan)
    index_unreachable: tuple[str, ...] = ()

    @classmethod
    def from_file(cls, path: Path | str) -> Plan:
        """The plan in `path`: OSError when it cannot be read, ValueError when it is no plan
        (a half-written file, another JSON document). Read once per version of the file
        (its inode, size and mtime): input functions and in-process jobs ask for it per job,
        and a plan of thousands of nodes takes a tenth of a second to read."""
        st = os.stat(path)
        return _read_plan(os.fspath(path), (st.st_ino, st.st_size, st.st_mtime_ns))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        target = data.get("target") or {}
        return cls(
            python=target.get("python", ""),
            platform_tag=target.get("platform_tag", ""),
            all_nodes=tuple(PlanNode.from_json(n) for n in data["nodes"]),
            invalid=tuple(InvalidInput(**i) for i in data.get("invalid", ())),
            events=tuple(data.get("events", ())),
            index_unreachable=tuple(data.get("index_unreachable", ())),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "target": {"python": self.python, "platform_tag": self.platform_tag},
            "nodes": [n.to_json() for n in self.all_nodes],
            "invalid": [dataclasses.asdict(i) for i in self.invalid],
            "events": list(self.events),
            "index_unreachable": list(self.index_unreachable),
        }

    def nodes(self, action: Action | None = None) -> tuple[PlanNode, ...]:
        """Every node, or those of one action, in the plan's order."""
        if action is None:
            return self.all_nodes
        return self._by_action.get(action, ())

    def node(self, key: str) -> PlanNode:
        """The node of `key`; RefineryError when the plan has none."""
        try:
            return self._by_key[key]
        except KeyError:
            raise RefineryError(f"{key} is not in the plan") from None

    def find(self, name: str, version: str) -> PlanNode | None:
        """The node of `name` `version` as the plan names them (a manifest entry's, or its
        `fallback_from` version), or None."""
        return self._by_release.get((name, version))

    @functools.cached_property
    def _by_action(self) -> dict[Action, tuple[PlanNode, ...]]:
        return {a: tuple(n for n in self.all_nodes if n.action is a) for a in Action}

    @functools.cached_property
    def _by_key(self) -> dict[str, PlanNode]:
        return {n.key: n for n in self.all_nodes}

    @functools.cached_property
    def _by_release(self) -> dict[tuple[str, str], PlanNode]:
        return {(n.name, n.version): n for n in self.all_nodes}


@functools.lru_cache(maxsize=4)
def _read_plan(path: str, _version: tuple[int, int, int]) -> Plan:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    try:
        return Plan.from_json(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a plan: {exc!r}") from None


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
        return _record(self, "status")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        """From an outcome record or a manifest entry (whose extra keys are dropped)."""
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["status"] = Status(data["status"])
        return cls(**data)
