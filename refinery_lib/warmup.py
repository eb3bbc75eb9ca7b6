"""The warm-up: the build requirements of every planned sdist, downloaded once.

Each isolated build (`python -m build`) creates a fresh environment and installs the sdist's
`[build-system].requires` into it. Left alone, every build asks the index for the same
setuptools again. The warm-up (rule `prepare_build_env`, part of the `prefetch` target and an
input of every build) reads those requirements from the sdists (build_requirements.py),
downloads their union once as wheels into `CACHE/buildenv/wheels` (for the builder's
interpreter and platform: the host's, or the target's for container builders), and for the
local builder makes each build environment two or more builds share once (shared_venvs.py).

What it did is a `WarmRecord`, stored as `results/buildenv/warm.json`: which sdists it covers,
with which pins, and which shared environment each uses. Builds read it back
(`WarmRecord.read`) to choose their build environment (attempt_env.py).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import proc
from .build_requirements import PIP_NOT_FOUND, BuildRequires, pip_vars, read_build_requires, union
from .errors import BuildError, CommandError
from .files import exclusive, read_json, write_json
from .interpreter import check_local_target, interpreter_for
from .logcap import iter_lines
from .safe_env import build_base_env
from .settings import BuilderKind, Settings
from .shared_venvs import (
    SharedEnv,
    env_digest,
    interpreter_id,
    make_shared_env,
    prune_envs,
    ready_env,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planned:
    """One sdist of the plan: its plan node key, file, sha256 and the pins of its first attempt."""

    key: str
    name: str
    sdist: Path
    sha256: str
    pins: tuple[str, ...] | None


@dataclass(frozen=True)
class WarmProblem:
    """Why an sdist is not (wholly) warmed: not covered, its shared environment not made, or
    its sdist not fetched at all."""

    key: str
    sdist: str
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "sdist": self.sdist, "problem": self.problem}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WarmProblem:
        return cls(str(data["key"]), str(data.get("sdist", "")), str(data.get("problem", "")))


@dataclass(frozen=True)
class WarmSdist:
    """What the warm-up did for one planned sdist: its build requirements and pins, whether
    they are all in the warm folder, and the shared environment made for it."""

    name: str
    sdist: str
    sha256: str
    requires: tuple[str, ...]
    #: where `requires` came from: pyproject.toml, or the PEP 517 default and why
    source: str
    #: the pins of its first isolated attempt, which the downloads were made under
    constraints: tuple[str, ...]
    covered: bool
    problem: str = ""
    #: the shared environment its isolated builds use (None: they make their own)
    venv: Path | None = None
    venv_key: str = ""
    venv_packages: dict[str, str] = field(default_factory=dict)
    venv_problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sdist": self.sdist,
            "sha256": self.sha256,
            "requires": list(self.requires),
            "source": self.source,
            "constraints": list(self.constraints),
            "covered": self.covered,
            "problem": self.problem,
            "venv": str(self.venv) if self.venv else "",
            "venv_key": self.venv_key,
            "venv_packages": dict(self.venv_packages),
            "venv_problem": self.venv_problem,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WarmSdist:
        return cls(
            name=str(data.get("name", "")),
            sdist=str(data.get("sdist", "")),
            sha256=str(data.get("sha256", "")),
            requires=tuple(data.get("requires", ())),
            source=str(data.get("source", "")),
            constraints=tuple(data.get("constraints", ())),
            covered=bool(data.get("covered")),
            problem=str(data.get("problem", "")),
            venv=Path(data["venv"]) if data.get("venv") else None,
            venv_key=str(data.get("venv_key", "")),
            venv_packages=dict(data.get("venv_packages") or {}),
            venv_problem=str(data.get("venv_problem", "")),
        )


@dataclass(frozen=True)
class PipCall:
    """One `pip download` of the warm-up."""

    requirements: tuple[str, ...]
    ok: bool
    #: the constraints it ran under; None when pip could not be started at all
    pins: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        pins = {} if self.pins is None else {"pins": list(self.pins)}
        return {"requirements": list(self.requirements), **pins, "ok": self.ok}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipCall:
        pins = data.get("pins")
        return cls(tuple(data.get("requirements", ())), bool(data.get("ok")),
                   None if pins is None else tuple(pins))


@dataclass(frozen=True)
class WarmVenv:
    """A shared environment the warm-up made (or found ready), and the sdists that use it."""

    env: SharedEnv
    #: plan node keys
    sdists: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        env = self.env
        return {"key": env.digest, "path": str(env.path), "created": env.created,
                "duration": env.duration, "packages": dict(env.packages),
                "sdists": list(self.sdists)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WarmVenv:
        env = SharedEnv(str(data["key"]), Path(data["path"]), dict(data.get("packages") or {}),
                        bool(data.get("created")), float(data.get("duration", 0.0)))
        return cls(env, tuple(data.get("sdists", ())))


@dataclass(frozen=True)
class WarmRecord:
    """What the warm-up did (results/buildenv/warm.json), written once and read by every
    build: the warm folder, the builder and target it was made for, each planned sdist's
    entry, the pip downloads and shared environments (absent when none ran)."""

    #: the warm folder: build requirements as wheels
    folder: Path
    builder: str
    python: str
    platform_tag: str
    #: by plan node key
    sdists: dict[str, WarmSdist]
    #: the wheels in the warm folder when it was done
    wheels: tuple[str, ...]
    duration: float
    #: why nothing was downloaded ("" when the downloads ran)
    skipped: str = ""
    #: planned sdists that could not be fetched, so were not read
    unfetched: tuple[WarmProblem, ...] = ()
    pip_calls: tuple[PipCall, ...] | None = None
    venvs: tuple[WarmVenv, ...] | None = None

    @property
    def requirements(self) -> list[str]:
        """The union of every sdist's build requirements."""
        return union(r for e in self.sdists.values() for r in e.requires)

    @property
    def problems(self) -> list[WarmProblem]:
        """Every sdist left unwarmed and why: those not fetched first."""
        return [*self.unfetched, *(
            WarmProblem(k, e.sdist, e.problem or e.venv_problem)
            for k, e in self.sdists.items() if e.problem or e.venv_problem
        )]

    @property
    def covered(self) -> int:
        return sum(e.covered for e in self.sdists.values())

    @property
    def total(self) -> int:
        return len(self.sdists) + len(self.unfetched)

    def summary(self) -> str:
        """The warm-up's log line: coverage, wheels, shared environments, problems."""
        venvs = self.venvs or ()
        problems = "; ".join(f"{p.sdist}: {p.problem}" for p in self.problems)
        return (
            f"build environments: {self.covered} of {self.total} sdist(s) covered by "
            f"{len(self.wheels)} wheel(s) in {self.folder}, {len(venvs)} shared "
            f"environment(s) ({sum(v.env.created for v in venvs)} made now) "
            f"({self.duration:.1f} s)" + (f"; {problems}" if problems else "")
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "folder": str(self.folder),
            "builder": self.builder,
            "target": {"python": self.python, "platform_tag": self.platform_tag},
            "skipped": self.skipped,
        }
        if self.pip_calls is not None:
            data["pip_calls"] = [c.to_json() for c in self.pip_calls]
        if self.venvs is not None:
            data["venvs"] = [v.to_json() for v in self.venvs]
        return data | {
            "requirements": self.requirements,
            "sdists": {k: e.to_json() for k, e in self.sdists.items()},
            "problems": [p.to_json() for p in self.problems],
            "covered": self.covered,
            "total": self.total,
            "wheels": list(self.wheels),
            "duration": self.duration,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WarmRecord:
        sdists = {k: WarmSdist.from_json(e) for k, e in (data.get("sdists") or {}).items()}
        target = data.get("target") or {}
        pip_calls, venvs = data.get("pip_calls"), data.get("venvs")
        return cls(
            folder=Path(data["folder"]),
            builder=str(data.get("builder", "")),
            python=str(target.get("python", "")),
            platform_tag=str(target.get("platform_tag", "")),
            sdists=sdists,
            wheels=tuple(data.get("wheels", ())),
            duration=float(data.get("duration", 0.0)),
            skipped=str(data.get("skipped", "")),
            unfetched=tuple(WarmProblem.from_json(p) for p in data.get("problems", ())
                            if p.get("key") not in sdists),
            pip_calls=None if pip_calls is None else tuple(PipCall.from_json(c)
                                                           for c in pip_calls),
            venvs=None if venvs is None else tuple(WarmVenv.from_json(v) for v in venvs),
        )

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> WarmRecord:
        return cls.from_json(read_json(path))


@dataclass
class _Entry:
    """One planned sdist while the warm-up works on it."""

    planned: Planned
    reqs: BuildRequires
    covered: bool = False
    problem: str = ""
    venv: SharedEnv | None = None
    venv_problem: str = ""

    def record(self) -> WarmSdist:
        return WarmSdist(
            name=self.planned.name,
            sdist=self.planned.sdist.name,
            sha256=self.planned.sha256,
            requires=self.reqs.requires,
            source=self.reqs.source,
            constraints=self.planned.pins or (),
            covered=self.covered,
            problem=self.problem,
            venv=self.venv.path if self.venv else None,
            venv_key=self.venv.digest if self.venv else "",
            venv_packages=dict(self.venv.packages) if self.venv else {},
            venv_problem=self.venv_problem,
        )


@dataclass
class _Downloader:
    """`pip download --only-binary :all:` into the warm folder, for the builder's interpreter."""

    argv: list[str]
    env: dict[str, str]
    dest: Path
    log_path: Path
    scratch: Path
    calls: list[PipCall] = field(default_factory=list)

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
            self.calls.append(PipCall(tuple(requirements), ok=False))
            return False, str(exc)
        ok = res.returncode == 0 and not res.timed_out
        self.calls.append(PipCall(tuple(requirements), ok=ok, pins=tuple(pins)))
        if ok:
            return True, ""
        # this command's part of the log, line by line (never the whole log in memory)
        missing = list(dict.fromkeys(
            m["req"] for line in iter_lines(self.log_path, start)
            for m in PIP_NOT_FOUND.finditer(line)
        ))
        if missing:
            return False, "no wheel to download for " + ", ".join(missing)
        return False, f"pip download exited {res.returncode} (see {self.log_path})"


def _downloader(settings: Settings, log_path: Path, scratch: Path) -> _Downloader:
    """pip of the local builder's own interpreter (its tags are the build's), or host pip
    told the target's platform, Python and ABI for a container builder."""
    dest = settings.paths.buildenv
    base = ["-m", "pip", "download", "--only-binary", ":all:", "--progress-bar", "off"]
    if settings.builder is not BuilderKind.CONTAINER:
        if settings.builder is BuilderKind.LOCAL:
            check_local_target(settings)
        env = build_base_env(settings.pass_env)  # as a build's: no secrets, no host pip config
        env.update(pip_vars(settings))
        return _Downloader(
            [interpreter_for(settings.target.python), *base], env, dest, log_path, scratch
        )
    # a container build sees the build's own variables only, not this host's pip config
    env = build_base_env(settings.pass_env)
    env.update(pip_vars(settings))
    argv = [sys.executable, *base, *settings.target.pip_binary_args()]
    return _Downloader(argv, env, dest, log_path, scratch)


def warm_build_env(
    settings: Settings,
    planned: Sequence[Planned],
    log_path: Path,
    unfetched: Sequence[WarmProblem] = (),
) -> WarmRecord:
    """Download the build requirements of `planned` once, and for the local builder make each
    distinct build environment once; the record says what is covered and which environment
    each sdist's builds share. `unfetched` are planned sdists that could not be had: the
    record names them first.

    Nothing here fails the run: a requirement that cannot be downloaded is named, and the
    sdists needing it are built online; an environment that cannot be made is named, and its
    sdists build each in its own, offline."""
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"# build requirements of {len(planned)} sdist(s), as wheels\n")
    entries = {p.key: _Entry(p, read_build_requires(p.sdist)) for p in planned}
    for e in entries.values():
        if e.reqs.problem:
            e.problem = e.reqs.problem
        elif e.planned.pins is None:
            e.problem = "no isolated variant: its builds install no build environment"
    todo = [e for e in entries.values() if not e.problem]
    skipped = ""
    pip_calls: tuple[PipCall, ...] | None = None
    venvs: tuple[WarmVenv, ...] | None = None
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
                pip_calls = tuple(downloader.calls)
                covered = [e for e in todo if e.covered]
                if (settings.builder is not BuilderKind.CONTAINER and settings.shared_build_env
                        and covered):
                    venvs = tuple(_share_envs(settings, covered, downloader, log_path,
                                              Path(scratch)))
    if skipped:
        for e in todo:
            e.problem = f"not warmed: {skipped}"
    folder = settings.paths.buildenv
    return WarmRecord(
        folder=folder,
        builder=str(settings.builder),
        python=settings.target.python,
        platform_tag=settings.target.platform_tag,
        sdists={k: e.record() for k, e in entries.items()},
        wheels=tuple(sorted(p.name for p in folder.glob("*.whl"))) if folder.is_dir() else (),
        duration=round(time.monotonic() - started, 3),
        skipped=skipped,
        unfetched=tuple(unfetched),
        pip_calls=pip_calls,
        venvs=venvs,
    )


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


def _share_envs(
    settings: Settings,
    entries: Sequence[_Entry],
    downloader: _Downloader,
    log_path: Path,
    scratch: Path,
) -> list[WarmVenv]:
    """One environment per distinct digest that two or more covered `entries` share (the local
    builder's), or that an earlier warm-up left ready; one that cannot be made is a named
    problem of its sdists only, which then build each in its own environment."""
    python = downloader.argv[0]
    folder = settings.paths.buildenv
    try:
        ident = interpreter_id(python)
    except CommandError as exc:
        for e in entries:
            e.venv_problem = f"shared build environment not made: {exc}"
        return []
    wheels = sorted(p.name for p in folder.glob("*.whl"))
    groups: dict[str, list[_Entry]] = {}
    for e in entries:
        key = env_digest(e.reqs.requires, e.planned.pins or (), ident, wheels)
        groups.setdefault(key, []).append(e)
    root = settings.paths.venvs
    root.mkdir(parents=True, exist_ok=True)
    made: list[WarmVenv] = []
    # two runs on one cache (snakemake --nolock) must not make or remove the same folder
    with exclusive(root / ".lock"):
        for key, group in groups.items():
            first = group[0]
            if len(group) < 2 and ready_env(root / key[:16], key) is None:
                # one build needs it: that build makes it (offline) as it would any way, once;
                # a shared copy would be made here for nothing (figure 6 of bench/ measured it)
                continue
            try:
                shared = make_shared_env(
                    key, union(first.reqs.requires), first.planned.pins or (), python, root,
                    folder, downloader.env, log_path, scratch,
                )
            except (CommandError, OSError) as exc:
                why = f"shared build environment not made (it builds in its own): {exc}"
                log.warning("%s: %s", ", ".join(e.planned.sdist.name for e in group), why)
                for e in group:
                    e.venv_problem = why
                continue
            for e in group:
                e.venv = shared
            made.append(WarmVenv(shared, tuple(e.planned.key for e in group)))
        prune_envs(root, keep={m.env.path.name for m in made})
    return made
