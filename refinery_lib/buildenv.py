"""Warm build environments: the build requirements of every planned sdist, downloaded once.

Each isolated build (`python -m build`) creates a fresh environment and installs the sdist's
`[build-system].requires` into it. Left alone, every build asks the index for the same
setuptools again. The warm-up (rule `prepare_build_env`, part of the `prefetch` target and an
input of every build) reads those requirements from the sdists, downloads their union once as
wheels into `CACHE/buildenv/wheels` (for the builder's interpreter and platform: the host's, or
the target's for container builders), and records which sdists it covers. A covered build then
installs its build environment offline from that folder (`offline_vars`); requirements the
backend only names at build time (`get_requires_for_build_wheel`) may still be missing there,
which `offline_miss` recognises so the attempt can be retried online at once.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from . import proc
from .attempts import order_variants, variant_stats
from .errors import BuildError, CommandError, InvalidWheelError
from .settings import Settings
from .wheels import sdist_members

log = logging.getLogger(__name__)

#: PEP 517/518: a project without `[build-system]` is built as if it named these
DEFAULT_REQUIRES = ("setuptools>=40.8.0", "wheel")

# pip's words for a requirement it could not satisfy from what it may see
_NOT_FOUND = re.compile(
    r"(?:No matching distribution found for|"
    r"Could not find a version that satisfies the requirement) (?P<req>\S+)"
)
# build's (and the container script's) report that installing the build environment failed
_INSTALL_FAILED = re.compile(r"'pip',.*'install'.*returned non-zero exit status")


@dataclass(frozen=True)
class BuildRequires:
    """What an sdist needs installed to be built, read from it without unpacking it."""

    sdist: str
    requires: tuple[str, ...] = ()
    source: str = ""
    problem: str = ""


def read_build_requires(sdist: Path) -> BuildRequires:
    """`[build-system].requires` of an sdist's pyproject.toml, or the PEP 517 default.

    A malformed pyproject.toml, a `[build-system]` without `requires` or a requirement that is
    not PEP 508 is a named problem: that sdist is not warmed (its build will say more)."""
    name = sdist.name
    try:
        raw = sdist_members(sdist).get("pyproject.toml")
    except InvalidWheelError as exc:
        return BuildRequires(name, problem=str(exc))
    if raw is None:
        return BuildRequires(name, DEFAULT_REQUIRES, "default: no pyproject.toml")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return BuildRequires(name, problem=f"pyproject.toml of {name} is not valid TOML: {exc}")
    system = data.get("build-system")
    if system is None:
        return BuildRequires(name, DEFAULT_REQUIRES, "default: no [build-system]")
    requires = system.get("requires") if isinstance(system, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        return BuildRequires(
            name, problem=f"[build-system] of {name} has no list of strings `requires`"
        )
    for req in requires:
        try:
            Requirement(req)
        except InvalidRequirement as exc:
            return BuildRequires(name, problem=f"{name}: invalid build requirement {req!r}: {exc}")
    return BuildRequires(name, tuple(requires), "pyproject.toml")


def union(requirements: Iterable[str]) -> list[str]:
    """Every distinct requirement once (as packaging normalises it), sorted."""
    return sorted({str(Requirement(r)) for r in requirements})


def build_pins(settings: Settings, name: str, variant) -> tuple[str, ...]:
    """Constraints on a build's build dependencies: the variant's and the package's override."""
    override = settings.overrides.get(name, {})
    return tuple(variant.constraints) + tuple(override.get("build_constraints", []))


def first_isolated_pins(settings: Settings, name: str) -> tuple[str, ...] | None:
    """The pins of the first isolated variant this package's attempts will use (the order
    builds take: override, else past success), or None when no variant of it is isolated."""
    override = settings.overrides.get(name, {})
    order = order_variants(
        settings.variant_order,
        variant_stats(settings.paths.history_db, name),
        override.get("variants", ()),
    )
    for vname in order:
        variant = settings.variants[vname]
        if variant.isolation:
            return build_pins(settings, name, variant)
    return None


def pip_vars(settings: Settings) -> dict[str, str]:
    """The pip variables every build and the warm-up use: indexes, cache folders as
    find-links (dependencies built earlier, downloads)."""
    env = settings.pip_index_env()
    env["PIP_FIND_LINKS"] = f"{settings.paths.wheels} {settings.paths.downloads}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@dataclass(frozen=True)
class Planned:
    """One sdist of the plan: its build key, file, sha256 and the pins of its first attempt."""

    key: str
    name: str
    sdist: Path
    sha256: str
    pins: tuple[str, ...] | None


@dataclass
class _Entry:
    planned: Planned
    reqs: BuildRequires
    covered: bool = False
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.planned.name,
            "sdist": self.planned.sdist.name,
            "sha256": self.planned.sha256,
            "requires": list(self.reqs.requires),
            "source": self.reqs.source,
            "constraints": list(self.planned.pins or ()),
            "covered": self.covered,
            "problem": self.problem,
        }


@dataclass
class _Downloader:
    """`pip download --only-binary :all:` into the warm folder, for the builder's interpreter."""

    argv: list[str]
    env: dict[str, str]
    dest: Path
    log_path: Path
    scratch: Path
    calls: list[dict[str, Any]] = field(default_factory=list)

    def fetch(self, requirements: Sequence[str], pins: Sequence[str]) -> tuple[bool, str]:
        """Download `requirements` (and their dependencies) under `pins`; (ok, why not)."""
        if not requirements:
            return True, ""
        n = len(self.calls)
        reqs = self.scratch / f"requirements-{n}.txt"
        reqs.write_text("\n".join(requirements) + "\n")
        argv = [*self.argv, "--dest", str(self.dest), "-r", str(reqs)]
        if pins:
            cons = self.scratch / f"constraints-{n}.txt"
            cons.write_text("\n".join(pins) + "\n")
            argv += ["-c", str(cons)]
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            res = proc.run(argv, log_path=self.log_path, env=self.env, check=False)
        except CommandError as exc:
            self.calls.append({"requirements": list(requirements), "ok": False})
            return False, str(exc)
        ok = res.returncode == 0 and not res.timed_out
        self.calls.append({"requirements": list(requirements), "pins": list(pins), "ok": ok})
        if ok:
            return True, ""
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            fh.seek(start)
            output = fh.read()
        missing = list(dict.fromkeys(m["req"] for m in _NOT_FOUND.finditer(output)))
        if missing:
            return False, "no wheel to download for " + ", ".join(missing)
        return False, f"pip download exited {res.returncode} (see {self.log_path})"


def _downloader(settings: Settings, log_path: Path, scratch: Path) -> _Downloader:
    """pip of the local builder's own interpreter (its tags are the build's), or host pip
    told the target's platform, Python and ABI for a container builder."""
    dest = settings.paths.buildenv
    base = ["-m", "pip", "download", "--only-binary", ":all:", "--progress-bar", "off"]
    if settings.container is None:
        from .build import check_local_target, interpreter_for

        check_local_target(settings)
        env = dict(os.environ)
        env.pop("PIP_NO_BINARY", None)  # as in local builds: --no-binary is for target packages
        env.update(pip_vars(settings))
        return _Downloader(
            [interpreter_for(settings.target.python), *base], env, dest, log_path, scratch
        )
    # a container build sees the build's own variables only, not this host's pip config
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    env.update(pip_vars(settings))
    argv = [sys.executable, *base, *settings.target.pip_binary_args()]
    return _Downloader(argv, env, dest, log_path, scratch)


def warm_build_env(settings: Settings, planned: Sequence[Planned], log_path: Path) -> dict:
    """Download the build requirements of `planned` once; the record says what is covered.

    Nothing here fails the run: a requirement that cannot be downloaded is named, and the
    sdists needing it are built as before, online."""
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"# build requirements of {len(planned)} sdist(s), as wheels\n")
    entries = {p.key: _Entry(p, read_build_requires(p.sdist)) for p in planned}
    record: dict[str, Any] = {
        "folder": str(settings.paths.buildenv),
        "builder": "container" if settings.container is not None else "local",
        "target": {"python": settings.target.python, "platform_tag": settings.target.platform_tag},
        "skipped": "",
    }
    for e in entries.values():
        if e.reqs.problem:
            e.problem = e.reqs.problem
        elif e.planned.pins is None:
            e.problem = "no isolated variant: its builds install no build environment"
    todo = [e for e in entries.values() if not e.problem]
    skipped = ""
    if not settings.binary_build_deps:
        skipped = "build.binary_build_deps is false: build dependencies may come from sdists"
    if todo and not skipped:
        settings.paths.buildenv.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.paths.buildenv.parent) as scratch:
            try:
                downloader = _downloader(settings, log_path, Path(scratch))
            except BuildError as exc:
                skipped = str(exc)
            else:
                _download_groups(downloader, todo)
                record["pip_calls"] = downloader.calls
    if skipped:
        record["skipped"] = skipped
        for e in todo:
            e.problem = f"not warmed: {skipped}"
    folder = settings.paths.buildenv
    record.update(
        requirements=union(r for e in entries.values() for r in e.reqs.requires),
        sdists={k: e.to_json() for k, e in entries.items()},
        problems=[
            {"key": k, "sdist": e.planned.sdist.name, "problem": e.problem}
            for k, e in entries.items()
            if e.problem
        ],
        covered=sum(e.covered for e in entries.values()),
        total=len(entries),
        wheels=sorted(p.name for p in folder.glob("*.whl")) if folder.is_dir() else [],
        duration=round(time.monotonic() - started, 3),
    )
    return record


def _download_groups(downloader: _Downloader, entries: Sequence[_Entry]) -> None:
    """One download of the union per set of pins; if it fails, one per sdist, so that only
    the sdists whose own requirements cannot be had stay uncovered."""
    groups: dict[tuple[str, ...], list[_Entry]] = {}
    for e in entries:
        groups.setdefault(e.planned.pins or (), []).append(e)
    for pins, group in groups.items():
        everything = tuple(union(r for e in group for r in e.reqs.requires))
        ok, why = downloader.fetch(everything, pins)
        tried = {everything: (ok, why)}
        for e in group:
            if ok:
                e.covered = True
                continue
            own = tuple(union(e.reqs.requires))
            if own not in tried:
                tried[own] = downloader.fetch(own, pins)
            e.covered, e.problem = tried[own]
        if not ok:
            log.warning(
                "build requirements not warmed: %s",
                "; ".join(f"{e.planned.sdist.name}: {e.problem}" for e in group if e.problem),
            )


def offline_vars(
    settings: Settings, record: dict | None, key: str, sha256: str, variant, name: str
) -> dict[str, str] | None:
    """pip variables for an attempt that installs its build environment from the warm folder
    only, or None when it must stay online: the sdist was not covered (or is another file,
    e.g. fallback-latest's), the variant is not isolated, or it pins other versions."""
    entry = (record or {}).get("sdists", {}).get(key)
    if not entry or not entry.get("covered") or entry.get("sha256") != sha256:
        return None
    if not variant.isolation or list(build_pins(settings, name, variant)) != entry["constraints"]:
        return None
    links = [record["folder"], str(settings.paths.wheels), str(settings.paths.downloads)]
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": " ".join(links)}


def offline_miss(log_text: str) -> list[str]:
    """Requirements an offline build-environment install could not find (empty when the
    attempt failed for another reason)."""
    if not _INSTALL_FAILED.search(log_text):
        return []
    return list(dict.fromkeys(m["req"] for m in _NOT_FOUND.finditer(log_text)))
