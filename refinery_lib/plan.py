"""Planning: which input wheels are reused, which target wheels are fetched or built, what is
missing.

The planner is pure apart from the index it is handed (and the downloads that index caches), so
unit tests drive it with a local index.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import IndexAccessError, InvalidWheelError
from .index import Release, SimpleIndex, candidate_versions
from .models import Action, PlanNode, WheelRecord, node_key
from .targets import Target
from .wheels import parse_metadata, read_sdist_metadata, read_wheel_metadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanSettings:
    upgrade_strategy: str = "pinned"  # pinned | eager
    fallback_latest: bool = False
    expansion_depth: int = 2
    no_binary: tuple[str, ...] = ()  # ":all:" or canonical names
    extras: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)  # canonical name -> version
    skip_known_failures: bool = False
    #: Python dependencies failed builds turned out to need (see missing_deps.py)
    extra_requires: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        return ":all:" not in self.no_binary and canonicalize_name(name) not in self.no_binary


@dataclass
class _Node:
    """A plan node while the planner works on it (`PlanNode` once the plan is made)."""

    name: str
    version: str
    action: Action
    depth: int = 0
    detail: str = ""
    requirement: str = ""
    needed_by: list[str] = field(default_factory=list)
    input_files: list[str] = field(default_factory=list)
    source: dict | None = None
    requires_dist: list[str] = field(default_factory=list)
    fallback_from: str = ""
    extras: set[str] = field(default_factory=set)
    specs: list[str] = field(default_factory=list)
    #: lines of requires_dist added from the missing-dependencies record (build-time needs,
    #: not runtime)
    missing_build_deps: list[str] = field(default_factory=list)

    def runtime_requires(self) -> list[str]:
        return [r for r in self.requires_dist if r not in self.missing_build_deps]


class Planner:
    def __init__(
        self,
        target: Target,
        settings: PlanSettings,
        index: SimpleIndex,
        download_dir: Path,
        last_status: Callable[[str, str], str | None] | None = None,
    ):
        self.target = target
        self.settings = settings
        self.index = index
        self.download_dir = download_dir
        self.last_status = last_status or (lambda _n, _v: None)
        self.env = target.marker_environment()
        self.nodes: dict[str, _Node] = {}  # canonical name -> node (one version per name)
        self.extra_nodes: list[_Node] = []  # further versions of one name, and missing ones

    # -- index helpers -------------------------------------------------------------------
    def _releases(self, name: str) -> list[Release]:
        try:
            return self.index.releases(name)
        except IndexAccessError as exc:
            log.warning("index lookup failed for %s: %s", name, exc)
            return []

    def _unreachable(self, name: str) -> str:
        """Why nothing is known of `name` when the index did not answer: that, not "the
        index has nothing" (the next run plans again: steps.forget_unreachable_plan)."""
        error = self.index.unreachable_for(name)
        return f"{error}; planned missing, the next run asks again" if error else ""

    def _source_for(self, name: str, version: Version, releases: list[Release]) -> dict | None:
        """Best target wheel (fetch) or the sdist (build) of one version, or None."""
        python = self.target.python
        same = [
            r
            for r in releases
            if r.version == version and not _yanked_skip(r) and _py_ok(r, python)
        ]
        if self.settings.wants_binary(name):
            best = _best_for(self.target, [r for r in same if r.kind == "wheel"])
            if best is not None:
                return {"kind": "wheel", **best.file.to_json(), "tags": list(best.tags)}
        sdists = [r for r in same if r.kind == "sdist"]
        if sdists:
            # prefer .tar.gz, the format PEP 625 standardises
            sdists.sort(key=lambda r: not r.file.filename.endswith(".tar.gz"))
            return {"kind": "sdist", **sdists[0].file.to_json()}
        return None

    def _requires_of_source(self, source: dict) -> list[str]:
        """Requires-Dist of a fetched wheel or an sdist, from index metadata or the cached file."""
        from .models import DistFile

        dist = DistFile(**{k: source[k] for k in DistFile.__dataclass_fields__ if k in source})
        try:
            if source["kind"] == "wheel" and dist.metadata_url:
                try:
                    return parse_metadata(self.index.read_bytes(dist.metadata_url)).get(
                        "requires-dist", []
                    )
                except IndexAccessError:
                    pass
            path = self.index.download(dist, self.download_dir)
            if source["kind"] == "wheel":
                return read_wheel_metadata(path).get("requires-dist", [])
            fields = read_sdist_metadata(path)
            if "requires-dist" in [d.lower() for d in fields.get("dynamic", [])]:
                return []
            return fields.get("requires-dist", [])
        except (IndexAccessError, InvalidWheelError) as exc:
            log.warning("cannot read requirements of %s: %s", dist.filename, exc)
            return []

    # -- planning -----------------------------------------------------------------------
    def plan(self, records: Iterable[WheelRecord]) -> list[PlanNode]:
        groups: dict[tuple[str, str], list[WheelRecord]] = defaultdict(list)
        for rec in records:
            if rec.valid:
                groups[(canonicalize_name(rec.name), rec.version)].append(rec)
        wanted = self._specifiers_from(r for rs in groups.values() for r in rs)
        for (name, version), recs in sorted(groups.items()):
            node = self._plan_input(name, version, recs, wanted.get(name, []))
            node.specs = [str(s) for s in wanted.get(name, []) if str(s)]
            if name in self.nodes:
                self.extra_nodes.append(node)
            else:
                self.nodes[name] = node
        self._expand()
        return self._finish()

    @staticmethod
    def _input_sdist(sdists: list[WheelRecord]) -> dict | None:
        """The build source of an input sdist (.tar.gz first, as on an index)."""
        if not sdists:
            return None
        rec = sorted(sdists, key=lambda r: not r.file.endswith(".tar.gz"))[0]
        return {"kind": "sdist", "filename": rec.file, "url": Path(rec.path).resolve().as_uri(),
                "sha256": rec.sha256, "requires_python": rec.requires_python,
                "input_path": rec.path}

    def _specifiers_from(self, recs: Iterable[WheelRecord]) -> dict[str, list[SpecifierSet]]:
        out: dict[str, list[SpecifierSet]] = defaultdict(list)
        for rec in recs:
            for req in self._active_requirements(rec.requires_dist, set()):
                out[canonicalize_name(req.name)].append(req.specifier)
        return out

    def _plan_input(
        self, name: str, version: str, recs: list[WheelRecord], specs: list[SpecifierSet]
    ) -> _Node:
        wheels = [r for r in recs if r.kind == "wheel"]
        sdists = [r for r in recs if r.kind == "sdist"]
        best = _best_for(self.target, wheels)
        node = _Node(
            name=name,
            version=version,
            action=Action.REUSE,
            input_files=[r.file for r in recs],  # an sdist alone is asked for too
            requires_dist=list((wheels or recs)[0].requires_dist),
        )
        if best is not None:
            node.input_files = [best.file]
            node.requires_dist = list(best.requires_dist)
            node.detail = f"compatible with the target: {', '.join(best.tags)}"
            return node
        tags = ", ".join(sorted({t for r in wheels for t in r.tags}))
        local = self._input_sdist(sdists) if self.settings.upgrade_strategy != "eager" else None
        if local is not None and not self.settings.pins.get(name):
            # the wheelhouse holds the source: built from it, the index is not asked
            why = (f"input wheel tags {tags} not accepted" if wheels
                   else "an sdist without a wheel in the input")
            node.action, node.source = Action.BUILD, local
            node.detail = f"{why}; build from the input's sdist {local['filename']}"
            return node
        releases = self._releases(name)
        pin = self.settings.pins.get(name)
        if pin:
            chosen, why = pin, f"pinned by override to {pin}"
        elif self.settings.upgrade_strategy == "eager":
            chosen = self._newest_allowed(name, specs, releases) or version
            why = f"eager: newest version allowed by dependents is {chosen}"
        else:
            chosen, why = version, "pinned to the input version"
        self._assign_source(
            node, chosen, releases, specs,
            (f"input wheel tags {tags} not accepted" if wheels
             else "an sdist without a wheel in the input") + f"; {why}"
        )
        return node

    def _assign_source(
        self,
        node: _Node,
        version: str,
        releases: list[Release],
        specs: list[SpecifierSet],
        why: str,
    ) -> None:
        try:
            ver = Version(version)
        except InvalidVersion:
            node.action, node.detail = Action.MISSING, f"invalid version {version!r}"
            return
        source = self._source_for(node.name, ver, releases)
        if source is None and self.settings.fallback_latest:
            newest = self._newest_allowed(node.name, specs, releases, with_source=True)
            if newest and newest != version:
                node.fallback_from = version
                why += (
                    f"; fallback-latest: {version} has no usable file on the index, using {newest}"
                )
                version, ver = newest, Version(newest)
                source = self._source_for(node.name, ver, releases)
        node.version = str(ver)
        if source is None:
            node.action = Action.MISSING
            node.detail = self._unreachable(node.name) or (
                f"{why}; no sdist and no target wheel of {node.name} {ver} on the index"
                + "".join(f"; {p}" for p in self.index.problems(node.name)))
            return
        node.source = source
        node.action = Action.FETCH if source["kind"] == "wheel" else Action.BUILD
        verb = "fetch target wheel" if node.action is Action.FETCH else "build from sdist"
        node.detail = f"{why}; {verb} {source['filename']}"
        if node.action is Action.BUILD:
            node.requires_dist = self._requires_of_source(source) or node.requires_dist
        else:
            node.requires_dist = self._requires_of_source(source)
        if (
            self.settings.skip_known_failures
            and self.last_status(node.name, node.version) == "failed"
        ):
            node.action = Action.SKIP
            node.detail = (
                "skipped: the last recorded build of this version failed (--skip-known-failures)"
            )

    def _newest_allowed(
        self,
        name: str,
        specs: list[SpecifierSet],
        releases: list[Release],
        with_source: bool = False,
    ) -> str | None:
        for ver in candidate_versions(releases, self.target.python):
            if all(s.contains(ver, prereleases=bool(s) and ver.is_prerelease) for s in specs):
                if ver.is_prerelease and not any(s.prereleases for s in specs):
                    continue
                if with_source and self._source_for(name, ver, releases) is None:
                    continue
                return str(ver)
        return None

    def _active_requirements(self, requires: Iterable[str], extras: set[str]) -> list[Requirement]:
        out = []
        for line in requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                log.warning("ignoring unparsable requirement %r", line)
                continue
            if req.marker is not None:
                envs = [dict(self.env, extra=e) for e in (extras or {""})]
                if not any(req.marker.evaluate(env) for env in envs):
                    continue
            out.append(req)
        return out

    def _expand(self) -> None:
        queue: deque[tuple[_Node, int]] = deque((n, 0) for n in list(self.nodes.values()))
        seen_edges: set[tuple[str, str]] = set()
        while queue:
            parent, depth = queue.popleft()
            if parent.action in (Action.MISSING, Action.SKIP):
                continue
            parent_extras = set(self.settings.extras.get(parent.name, ())) | parent.extras
            extra = self.settings.extra_requires.get(parent.name, ())
            if extra and parent.action is Action.BUILD:
                known = {*parent.requires_dist, *parent.missing_build_deps}
                parent.missing_build_deps += [e for e in extra if e not in known]
                parent.requires_dist = list(dict.fromkeys([*parent.requires_dist, *extra]))
            for req in self._active_requirements(parent.requires_dist, parent_extras):
                dep = canonicalize_name(req.name)
                if (parent.name, dep) in seen_edges or dep == parent.name:
                    continue
                seen_edges.add((parent.name, dep))
                who = f"{parent.name}=={parent.version}"
                existing = self.nodes.get(dep)
                if existing is not None:
                    if existing.action is Action.MISSING and existing.version == "":
                        existing.needed_by.append(who)
                        continue
                    if req.specifier.contains(existing.version, prereleases=True):
                        existing.needed_by.append(who)
                        if str(req.specifier) and str(req.specifier) not in existing.specs:
                            existing.specs.append(str(req.specifier))
                        new_extras = set(req.extras) - existing.extras
                        if new_extras and existing.action not in (Action.MISSING, Action.SKIP):
                            existing.extras |= new_extras
                            queue.append((existing, existing.depth))
                        continue
                    self.extra_nodes.append(
                        _missing(dep, req, who, depth + 1,
                                 f"conflict: {dep} {existing.version} is planned but {who} "
                                 f"requires {req}")
                    )
                    continue
                if depth + 1 > self.settings.expansion_depth:
                    self.nodes[dep] = _missing(
                        dep, req, who, depth + 1,
                        f"{req} (needed by {who}) is beyond the expansion depth "
                        f"{self.settings.expansion_depth}",
                    )
                    continue
                node = self._plan_dependency(dep, req, who, depth + 1)
                self.nodes[dep] = node
                queue.append((node, depth + 1))

    def _plan_dependency(self, name: str, req: Requirement, who: str, depth: int) -> _Node:
        releases = self._releases(name)
        node = _Node(
            name=name,
            version="",
            action=Action.MISSING,
            requirement=str(req),
            needed_by=[who],
            depth=depth,
            extras=set(req.extras),
            specs=[str(req.specifier)] if str(req.specifier) else [],
        )
        pin = self.settings.pins.get(name)
        version = pin or self._newest_allowed(name, [req.specifier], releases, with_source=True)
        if version is None:
            known = ", ".join(str(v) for v in candidate_versions(releases, self.target.python)[:5])
            node.detail = self._unreachable(name) or (
                f"no version of {name} on the index satisfies {req} for Python "
                f"{self.target.python} (needed by {who})"
                + (f"; available: {known}" if known else "; the index has no such project")
                + "".join(f"; {p}" for p in self.index.problems(name))
            )
            return node
        self._assign_source(node, version, releases, [req.specifier], f"dependency {req} of {who}")
        return node

    def _finish(self) -> list[PlanNode]:
        all_nodes = list(self.nodes.values()) + self.extra_nodes
        keys = {}
        for n in all_nodes:
            keys[id(n)] = node_key(n.name, n.version or "none")
        build_edges: dict[str, list[str]] = {}
        fetch_deps: dict[str, bool] = {}
        by_name = {n.name: n for n in self.nodes.values()}
        for n in all_nodes:
            if n.action is not Action.BUILD:
                continue
            deps: list[str] = []
            has_fetch = False
            for req in self._active_requirements(n.requires_dist, n.extras):
                dep = by_name.get(canonicalize_name(req.name))
                if dep is None or dep is n:
                    continue
                if dep.action is Action.BUILD:
                    deps.append(keys[id(dep)])
                elif dep.action is Action.FETCH:
                    has_fetch = True
            build_edges[keys[id(n)]] = sorted(set(deps))
            fetch_deps[keys[id(n)]] = has_fetch
        _break_cycles(build_edges)
        build_only = self._build_only(all_nodes)
        out = []
        for n in all_nodes:
            key = keys[id(n)]
            out.append(
                PlanNode(
                    name=n.name,
                    version=n.version,
                    action=n.action,
                    key=key,
                    detail=n.detail,
                    depth=n.depth,
                    requirement=n.requirement,
                    needed_by=tuple(dict.fromkeys(n.needed_by)),
                    input_files=tuple(n.input_files),
                    source=n.source,
                    build_deps=tuple(build_edges.get(key, ())),
                    fetch_deps=fetch_deps.get(key, False),
                    requires_dist=tuple(n.requires_dist),
                    fallback_from=n.fallback_from,
                    specifiers=tuple(n.specs),
                    build_only=id(n) in build_only,
                )
            )
        out.sort(key=lambda p: (p.depth, p.name, p.version))
        return out

    def _build_only(self, all_nodes: list[_Node]) -> set[int]:
        """ids of the nodes needed only to build others.

        Output packages are the inputs and, transitively, the Requires-Dist (active for the
        target, the extras asked for followed) of output packages; the missing_build_deps build
        dependencies (`extra_requires`) are not followed, nor the requirements of a package
        that is missing or skipped (the expansion does not follow those either). Whatever else
        is planned came from a missing_build_deps build dependency: build-only.
        """
        runtime: set[int] = set()
        edges: set[tuple[str, str]] = set()  # (dependent, dependency) asked for at runtime
        seen: set[tuple[int, frozenset[str]]] = set()
        queue: deque[tuple[_Node, frozenset[str]]] = deque(
            (n, frozenset()) for n in all_nodes if n.input_files
        )
        while queue:
            node, extras = queue.popleft()
            if (id(node), extras) in seen:
                continue
            seen.add((id(node), extras))
            runtime.add(id(node))
            if node.action in (Action.MISSING, Action.SKIP):
                continue
            asked = set(self.settings.extras.get(node.name, ())) | extras
            for req in self._active_requirements(node.runtime_requires(), asked):
                dep = canonicalize_name(req.name)
                edges.add((node.name, dep))
                child = self.nodes.get(dep)
                if child is not None and child is not node:
                    queue.append((child, frozenset(req.extras)))
        extra = {id(n) for n in self.extra_nodes}
        out = set()
        for n in all_nodes:
            if id(n) in runtime:
                continue
            if id(n) in extra and n.needed_by:
                # a conflict: build-only unless the requirement naming it is a runtime one
                parent = canonicalize_name(n.needed_by[0].split("==")[0])
                if (parent, n.name) in edges:
                    continue
            out.add(id(n))
        if out:
            names = sorted(f"{n.name}=={n.version}" for n in all_nodes if id(n) in out)
            log.info(
                "%d package(s) needed only to build others (not output packages): %s",
                len(names),
                ", ".join(names),
            )
        return out


def _missing(name: str, req: Requirement, who: str, depth: int, detail: str) -> _Node:
    """A requirement nothing planned can meet, naming who needs it."""
    return _Node(name=name, version="", action=Action.MISSING, requirement=str(req),
                 needed_by=[who], depth=depth, detail=detail)


def _break_cycles(edges: dict[str, list[str]]) -> None:
    """Drop back edges so build targets form a DAG (Snakemake refuses cycles)."""
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        kept = []
        for dep in edges.get(node, []):
            if state.get(dep) == 1:
                log.warning("dependency cycle between %s and %s: not ordering them", node, dep)
                continue
            if state.get(dep) is None:
                visit(dep)
            kept.append(dep)
        edges[node] = kept
        state[node] = 2

    for node in sorted(edges):
        if state.get(node) is None:
            visit(node)


class _Tagged(Protocol):
    @property
    def tags(self) -> tuple[str, ...]: ...


_W = TypeVar("_W", bound=_Tagged)


def _best_for(target: Target, wheels: Iterable[_W]) -> _W | None:
    """The wheel whose tags the target ranks best (the first of equals), or None when the
    target accepts none of them."""
    ranked = [(rank, w) for w in wheels if (rank := target.best_rank(w.tags)) is not None]
    return min(ranked, key=lambda kr: kr[0])[1] if ranked else None


def _yanked_skip(r: Release) -> bool:
    return r.file.yanked


def _py_ok(r: Release, python: str) -> bool:
    from .index import python_ok

    return python_ok(r.file.requires_python, python)
