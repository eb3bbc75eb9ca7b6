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

For the local builder the warm-up also makes each build environment that two or more builds
need once (`make_shared_env`): one venv per set of requirements, pins, interpreter and warm
wheels, under `CACHE/buildenv/venvs/`, installed offline from the warm folder, read-only once
made. Builds whose sdist it covers use it as it is (`shared_env`,
refinery_lib/pep517/build_in_env.py) instead of making their own, so no environment is made
twice; a set only one build needs is made by that build, offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from . import proc
from .attempts import order_variants, variant_stats
from .errors import BuildError, CommandError, InvalidWheelError
from .files import exclusive
from .interpreter import check_local_target, interpreter_for
from .logcap import iter_lines, lines_of, texts_of
from .pep517.build_in_env import LACKS, distributions, site_packages
from .safe_env import build_base_env
from .settings import BuilderKind, Settings
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
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
_INSTALL_FAILED = re.compile(r"'pip',.*'install'.*returned non-zero exit status")


@dataclass(frozen=True)
class BuildRequires:
    """What an sdist needs installed to be built, read from it without unpacking it."""

    sdist: str
    requires: tuple[str, ...] = ()
    source: str = ""
    problem: str = ""
    #: `[build-system].build-backend` (PEP 517's default when absent): says how a cross build
    #: passes its cross settings (meson cross file, CMake toolchain, sysconfig)
    backend: str = LEGACY_BACKEND


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
    backend = system.get("build-backend")
    return BuildRequires(name, tuple(requires), "pyproject.toml",
                         backend=backend if isinstance(backend, str) else LEGACY_BACKEND)


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
    find-links (dependencies built earlier, downloads), and no pip configuration file of this
    host's (the settings say which indexes a build sees; PIP_CERT is passed on)."""
    env = settings.pip_index_env()
    env["PIP_CONFIG_FILE"] = os.devnull
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


@dataclass(frozen=True)
class SharedEnv:
    """A build environment the warm-up made (or found made) for every build that needs it."""

    key: str
    path: Path
    packages: dict[str, str]
    created: bool
    duration: float = 0.0

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


@dataclass
class _Entry:
    planned: Planned
    reqs: BuildRequires
    covered: bool = False
    problem: str = ""
    venv: SharedEnv | None = None
    venv_problem: str = ""

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
            "venv": str(self.venv.path) if self.venv else "",
            "venv_key": self.venv.key if self.venv else "",
            "venv_packages": dict(self.venv.packages) if self.venv else {},
            "venv_problem": self.venv_problem,
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
        # this command's part of the log, line by line (never the whole log in memory)
        missing = list(dict.fromkeys(
            m["req"] for line in iter_lines(self.log_path, start) for m in _NOT_FOUND.finditer(line)
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


def warm_build_env(settings: Settings, planned: Sequence[Planned], log_path: Path) -> dict:
    """Download the build requirements of `planned` once, and for the local builder make each
    distinct build environment once; the record says what is covered and which environment
    each sdist's builds share.

    Nothing here fails the run: a requirement that cannot be downloaded is named, and the
    sdists needing it are built as before, online; an environment that cannot be made is
    named, and its sdists build each in its own, offline."""
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"# build requirements of {len(planned)} sdist(s), as wheels\n")
    entries = {p.key: _Entry(p, read_build_requires(p.sdist)) for p in planned}
    record: dict[str, Any] = {
        "folder": str(settings.paths.buildenv),
        "builder": str(settings.builder),
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
                covered = [e for e in todo if e.covered]
                if (settings.builder is not BuilderKind.CONTAINER and settings.shared_build_env
                        and covered):
                    record["venvs"] = _share_envs(
                        settings, covered, downloader, log_path, Path(scratch)
                    )
    if skipped:
        record["skipped"] = skipped
        for e in todo:
            e.problem = f"not warmed: {skipped}"
    folder = settings.paths.buildenv
    record.update(
        requirements=union(r for e in entries.values() for r in e.reqs.requires),
        sdists={k: e.to_json() for k, e in entries.items()},
        problems=[
            {"key": k, "sdist": e.planned.sdist.name, "problem": e.problem or e.venv_problem}
            for k, e in entries.items()
            if e.problem or e.venv_problem
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


VENV_MARKER = ".refinery-ready.json"


def interpreter_id(python: str) -> str:
    """A builder interpreter's path and full version: part of its environments' key."""
    if python == sys.executable:
        version = sys.version
    else:
        version = proc.run([python, "-c", "import sys; print(sys.version)"]).output.strip()
    return f"{python} {' '.join(version.split())}"


def env_key(
    requires: Iterable[str], pins: Iterable[str], interpreter: str, wheels: Iterable[str]
) -> str:
    """What makes two build environments the same: the static build requirements, the pins,
    the interpreter, and the wheels they are installed from (a newer setuptools downloaded
    later makes a new environment instead of keeping the old one forever)."""
    blob = json.dumps(
        {
            "requires": union(requires),
            "pins": sorted(pins),
            "interpreter": interpreter,
            "wheels": sorted(wheels),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def ready_env(path: Path, key: str) -> dict[str, Any] | None:
    """The marker of a finished environment at `path` made for `key`, else None (missing,
    half made by a run that crashed, another key, or its base interpreter gone)."""
    try:
        marker = json.loads((path / VENV_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("key") != key:
        return None
    if not (path / "bin" / "python").exists():
        return None
    return marker


def installed_packages(env: Path) -> dict[str, str]:
    """Every distribution installed in an environment, by canonical name."""
    return {n: d.version for n, d in sorted(distributions(site_packages(env)).items())}


def remove_tree(path: Path) -> None:
    """Remove a folder, read-only ones included (a shared environment is made read-only)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, _ in os.walk(path):
            for d in (folder, *(os.path.join(folder, x) for x in dirs)):
                if not os.path.islink(d):
                    os.chmod(d, os.stat(d).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        shutil.rmtree(path)
    else:
        path.unlink()


def _read_only(folder: Path) -> None:
    """No write bits under `folder`: a user (not root) cannot change a shared environment
    while builds use it, and Python writes no bytecode into it."""
    for parent, dirs, files in os.walk(folder, topdown=False):
        for name in (*files, *dirs):
            p = os.path.join(parent, name)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IMODE(os.stat(p).st_mode) & ~0o222)
    os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) & ~0o222)


def _relocate(made: Path, final: Path) -> None:
    """Scripts and pyvenv.cfg name the folder the environment was made in: name its place."""
    old, new = str(made).encode(), str(final).encode()
    bin_dir = made / "bin"
    for p in [made / "pyvenv.cfg", *(sorted(bin_dir.iterdir()) if bin_dir.is_dir() else [])]:
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            if old in data:
                p.write_bytes(data.replace(old, new))


def make_shared_env(
    key: str,
    requires: Sequence[str],
    pins: Sequence[str],
    python: str,
    root: Path,
    wheels: Path,
    env: Mapping[str, str],
    log_path: Path,
    scratch: Path,
) -> SharedEnv:
    """The environment for `key` under `root`: found ready, or made now.

    Made as `python -m build` makes an isolated one (a venv without pip, the requirements
    installed by the interpreter's pip with `--python`), but offline from the `wheels` folder,
    in a temporary sibling renamed into place; bytecode is compiled at install, the files are
    made read-only and the marker, with the installed versions, is written last. A folder
    without the marker (a crash) is not ready: it is removed and made again. Raises
    CommandError or OSError when it cannot be made."""
    started = time.monotonic()
    final = root / key[:16]
    marker = ready_env(final, key)
    if marker is not None:
        os.utime(final / VENV_MARKER)  # in use: see prune_envs
        return SharedEnv(key, final, dict(marker.get("packages", {})), created=False)
    root.mkdir(parents=True, exist_ok=True)
    remove_tree(final)
    made = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    pip_env = dict(env)
    pip_env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_ONLY_BINARY=":all:")
    pip_env.pop("PIP_CONSTRAINT", None)
    reqs = scratch / f"env-{final.name}-requirements.txt"
    reqs.write_text("\n".join(requires) + "\n")
    if pins:
        cons = scratch / f"env-{final.name}-constraints.txt"
        cons.write_text("\n".join(pins) + "\n")
        pip_env["PIP_CONSTRAINT"] = str(cons)
    try:
        proc.run([python, "-m", "venv", "--without-pip", "--symlinks", made], log_path=log_path)
        proc.run(
            [
                python, "-m", "pip", "--python", made / "bin" / "python", "install",
                "--ignore-installed", "--use-pep517", "--no-warn-script-location",
                "--no-input", "--progress-bar", "off", "-r", reqs,
            ],
            log_path=log_path,
            env=pip_env,
        )
        _relocate(made, final)
        os.rename(made, final)
    except BaseException:
        remove_tree(made)
        raise
    packages = installed_packages(final)
    for sub in ("bin", "lib", "lib64", "include"):
        if (final / sub).is_dir() and not (final / sub).is_symlink():
            _read_only(final / sub)
    duration = round(time.monotonic() - started, 3)
    ready = final / f"{VENV_MARKER}.tmp"
    ready.write_text(
        json.dumps(
            {
                "key": key,
                "requires": list(requires),
                "pins": list(pins),
                "python": python,
                "packages": packages,
                "duration": duration,
            },
            indent=1,
            sort_keys=True,
        )
    )
    os.replace(ready, final / VENV_MARKER)
    return SharedEnv(key, final, packages, created=True, duration=duration)


def _share_envs(
    settings: Settings,
    entries: Sequence[_Entry],
    downloader: _Downloader,
    log_path: Path,
    scratch: Path,
) -> list[dict[str, Any]]:
    """One environment per distinct key that two or more covered `entries` share (the local
    builder's), or that an earlier warm-up left ready; one that cannot be made is a named
    problem of its sdists only, which then build as before."""
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
        key = env_key(e.reqs.requires, e.planned.pins or (), ident, wheels)
        groups.setdefault(key, []).append(e)
    root = settings.paths.venvs
    root.mkdir(parents=True, exist_ok=True)
    made: list[dict[str, Any]] = []
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
            made.append(
                {
                    "key": key,
                    "path": str(shared.path),
                    "created": shared.created,
                    "duration": shared.duration,
                    "packages": shared.packages,
                    "sdists": [e.planned.key for e in group],
                }
            )
        prune_envs(root, keep={Path(m["path"]).name for m in made})
    return made


#: an environment no warm-up has used for this long is removed (new downloads, other pins or
#: another interpreter give new keys, so old environments would otherwise pile up)
PRUNE_AFTER = 7 * 24 * 3600


def prune_envs(root: Path, keep: set[str], now: float | None = None) -> list[str]:
    """Remove the environments under `root` not in `keep` whose marker was last used more
    than PRUNE_AFTER ago, and half-made ones (no marker) as old; returns their names. Runs
    under the warm-up's lock; a run still building with an older environment used it within
    the week."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(root.iterdir()):
        if path.name in keep or not path.is_dir() or path.name.startswith("."):
            continue
        marker = path / VENV_MARKER
        try:
            last = (marker if marker.exists() else path).stat().st_mtime
        except OSError:
            continue
        if now - last > PRUNE_AFTER:
            remove_tree(path)
            removed.append(path.name)
    if removed:
        log.info("removed %d build environment(s) unused for a week: %s", len(removed),
                 ", ".join(removed))
    return removed


def shared_env(
    settings: Settings, record: dict | None, key: str, sha256: str, variant, name: str
) -> SharedEnv | None:
    """The ready environment the warm-up made for this build, or None: the builder is not
    local, the sdist was not covered or is another file, the variant is not isolated or pins
    other versions (`offline_vars`' conditions), or no environment was made for it."""
    if settings.builder is BuilderKind.CONTAINER or not settings.shared_build_env:
        return None
    if offline_vars(settings, record, key, sha256, variant, name) is None:
        return None
    entry = (record or {})["sdists"][key]
    if not entry.get("venv") or not entry.get("venv_key"):
        return None
    path = Path(entry["venv"])
    if ready_env(path, entry["venv_key"]) is None:
        return None
    return SharedEnv(entry["venv_key"], path, dict(entry.get("venv_packages", {})), False)


def shared_unmet(log: Path | str) -> list[str]:
    """Requirements the shared environment lacked (build_in_env.py's report), else empty.
    `log` is the log file (read line by line, `logcap.lines_of`) or its text."""
    for line in lines_of(log):
        if line.startswith(LACKS):
            return [r.strip() for r in line[len(LACKS):].split(", ") if r.strip()]
    return []


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


def offline_miss(log: Path | str) -> list[str]:
    """Requirements an offline build-environment install could not find (empty when the
    attempt failed for another reason). `log` is the log file (read in blocks of whole lines,
    `logcap.texts_of`) or its text; neither pattern matches across a line break."""
    failed, missing = False, []
    for text in texts_of(log):
        failed = failed or _INSTALL_FAILED.search(text) is not None
        missing.extend(m["req"] for m in _NOT_FOUND.finditer(text))
    return list(dict.fromkeys(missing)) if failed else []
