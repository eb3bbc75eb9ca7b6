"""Building one package from its sdist: attempts over variants, hints, recipes, fallback-latest.

The local builder runs here; `python -m build` does the building and auditwheel the repair.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from . import proc
from .attempt_env import AttemptEnv, attempt_env
from .attempts import (
    AttemptMeta,
    BuildEnvKind,
    EarlierTry,
    Variant,
    order_variants,
    variant_for_attempt,
    variant_stats,
)
from .build_requirements import build_pins, pip_vars, read_build_requires
from .cross.attempt import cross_recipe, run_cross_build, target_libraries_for, tools_for
from .errors import BuildError, CommandError, IndexAccessError, SdistUnpackError
from .failure_lines import REASON_SEP, first_error_line
from .files import inside, place_wheel, read_json, write_json
from .hints import Hint, match_log, python_deps_from_hints, recipe_from_hints
from .history import new_event
from .index import candidate_versions
from .interpreter import check_local_target, interpreter_for
from .models import DistFile, Outcome, PlanNode, Status
from .overrides import PackageOverride
from .pep517 import build_in_env
from .recipes import Recipe, apply_on_host, host_package_family
from .repair import repair_wheel
from .reproducible import (
    extract_sdist,
    installed_build_deps,
    normalize_wheel,
    source_date_epoch,
)
from .safe_env import build_base_env
from .settings import BuilderKind, Settings
from .smoke import smoke_import
from .warmup import WarmRecord
from .wheels import sha256_file

log = logging.getLogger(__name__)

#: build backends that choose their own compile flags (a CFLAGS variable only adds to them)
OWN_FLAGS_BACKENDS = ("mesonpy", "scikit_build_core", "maturin", "cmeel", "py_build_cmake")


@dataclass(frozen=True)
class BuildIdentity:
    """Everything that makes two builds of a package the same, in one place: the cache digest
    of a built wheel (`digest`, in its record's name) and the params of the build rule
    (`params`: a change reruns that package's job) are both made from it, so a setting that
    changes a build changes both. Not hashable (an override's `env` is a dict); compare with
    ==."""

    #: which package, from which sdist (name and version are the record's `node.key` too)
    name: str
    version: str
    sdist: str
    sdist_sha256: str
    #: the target
    python: str
    platform: str
    #: who compiles, and in which image (the container's, or the cross builder's target
    #: image; "" for the local builder)
    builder: str
    image: str
    #: every configured variant, (name, repr) in the config's order, and the order tried
    variants: tuple[tuple[str, str], ...]
    variant_order: tuple[str, ...]
    binary_build_deps: bool
    #: the package's override (version pin, variants, config_settings, recipe...)
    override: PackageOverride

    @classmethod
    def of(cls, settings: Settings, name: str, version: str, sdist: str = "",
           sdist_sha256: str = "") -> BuildIdentity:
        c = settings.container
        image = (c.image or c.preset) if c is not None and settings.builder != "local" else ""
        return cls(
            name=name,
            version=version,
            sdist=sdist,
            sdist_sha256=sdist_sha256,
            python=settings.target.python,
            platform=settings.target.platform_tag,
            builder=str(settings.builder),
            image=image,
            variants=tuple((k, repr(v)) for k, v in settings.variants.items()),
            variant_order=tuple(settings.variant_order),
            binary_build_deps=settings.binary_build_deps,
            override=settings.override(name),
        )

    def digest(self) -> str:
        """The digest naming the wheel built this way in the cache: 16 hex digits of a sha256
        over every field but the name, version and sdist file name (the record's file name
        starts with the node's key, name and version; the sdist's sha256 stands for the file).
        Builder, image and variant order are hashed only when not at their defaults (local,
        "", the variants' own order), so a default build's digest does not depend on them."""
        fields = self.params()
        hashed = ("python", "platform", "variants", "binary_build_deps", "override")
        blob = {"sdist": fields["sdist_sha256"]} | {k: fields[k] for k in hashed}
        added = {"builder": BuilderKind.LOCAL, "image": "",
                 "variant_order": list(fields["variants"])}
        blob |= {k: fields[k] for k, default in added.items() if fields[k] != default}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def params(self) -> dict[str, Any]:
        """Every field, as the build rule's params (plain JSON values)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return fields | {"variants": dict(self.variants), "variant_order": list(self.variant_order),
                         "override": self.override.to_json()}


def build_digest(node: PlanNode, settings: Settings, sdist_sha: str) -> str:
    """The cache digest of `node` built from the sdist with sha256 `sdist_sha` (BuildIdentity)."""
    src = node.source or {}
    return BuildIdentity.of(settings, node.name, node.version, src.get("filename", ""),
                            sdist_sha).digest()


def fetch_sdist(node: PlanNode, settings: Settings) -> Path:
    """The sdist of a build node in the download cache: downloaded (sha256 checked), or
    copied from the input folder for an sdist the wheelhouse holds (the scan's sha256 must
    still match: the file may have changed since)."""
    src = node.source or {}
    if src.get("input_path"):
        path = place_wheel(Path(src["input_path"]), settings.paths.downloads)
        if src.get("sha256") and sha256_file(path) != src["sha256"]:
            path.unlink(missing_ok=True)
            raise IndexAccessError(f"the input's {src['filename']} changed since it was "
                                   "scanned; run again")
        return path
    dist = DistFile(**{k: src[k] for k in DistFile.__dataclass_fields__ if k in src})
    return settings.index().download(dist, settings.paths.downloads)


def sdist_for(node: PlanNode, settings: Settings) -> Path:
    """The cached sdist of a build node (downloaded by fetch_sdist)."""
    try:
        return fetch_sdist(node, settings)
    except IndexAccessError as exc:
        raise BuildError(f"cannot fetch the sdist of {node.name} {node.version}: {exc}") from exc


def verified_sdist(node: PlanNode, settings: Settings, path: Path, sha256: str) -> Path:
    """The sdist a build is about to use, checked against its sha256 first (the index's, else
    the one its fetch recorded): a cached file changed since (a bad disk, a stray edit, a
    half-copied cache) is fetched again instead of built. A fetch that still does not match
    is a BuildError naming both digests."""
    want = (node.source or {}).get("sha256") or sha256
    try:
        got = sha256_file(path)
    except OSError:
        got = "missing"
    if got == want:
        return path
    log.warning("the cached sdist %s does not match its sha256 (%s, expected %s): fetching it "
                "again", path, got, want)
    path.unlink(missing_ok=True)
    fresh = sdist_for(node, settings)
    got = sha256_file(fresh)
    if got != want:
        raise BuildError(f"the sdist of {node.name} {node.version} does not match its sha256 "
                         f"(got {got}, expected {want}); not building it")
    return fresh


def check_sdist_unchanged(sdist: Path, sha256: str) -> None:
    """Before an attempt uses the sdist again: it must still be the file that was checked."""
    got = sha256_file(sdist)
    if got != sha256:
        raise BuildError(f"the sdist {sdist.name} changed during the build (sha256 {got}, "
                         f"expected {sha256}); run again to fetch it anew")


@dataclass
class AttemptResult:
    number: int
    variant: str
    log_path: Path
    ok: bool
    duration: float
    exit_code: int | None = None
    timed_out: bool = False
    wheel: Path | None = None
    detail: str = ""
    #: what went wrong, in one line: the refinery's own reason, else the log's first error
    error_line: str = ""
    hints: list[dict[str, Any]] = field(default_factory=list)
    build_deps: dict[str, str] = field(default_factory=dict)
    source_date_epoch: int | None = None
    #: how its build environment was installed (attempt_env.py)
    build_env: BuildEnvKind = BuildEnvKind.ONLINE
    # requirements a try of this attempt lacked in its build environment (set aside, retried)
    missing: list[str] = field(default_factory=list)
    builder: str = ""
    #: no other attempt can succeed (the sdist itself cannot be unpacked): stop here
    fatal: bool = False


@dataclass
class _Run:
    """The state of one package's build across attempts (and a fallback version)."""

    node: PlanNode
    settings: Settings
    events: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[AttemptResult] = field(default_factory=list)
    recipes: list[dict[str, Any]] = field(default_factory=list)
    container_meta: dict[str, Any] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=dict)
    #: the warm-up's record (warmup.py): a covered build uses its shared environment, or
    #: installs its own offline from the warm folder
    warm: WarmRecord | None = None
    #: the builder of the next attempt: the settings' one, until a cross-specific failure
    #: steps down to the container builder (the fallback ladder)
    builder: BuilderKind = BuilderKind.LOCAL
    #: what a cross attempt records: zig version and target, glibc floor, target image
    cross_meta: dict[str, Any] = field(default_factory=dict)
    repair_meta: dict[str, Any] = field(default_factory=dict)
    #: sha256 of each sdist this run builds, taken at its first attempt
    sdist_sha: dict[Path, str] = field(default_factory=dict)

    def event(self, version: str, status: Status, detail: str, **meta: Any) -> None:
        self.events.append(new_event(self.node.name, version, status, detail, **meta))


def build_package(
    node: PlanNode, sdist: Path, settings: Settings, warm: WarmRecord | None = None
) -> Outcome:
    """Build `node` from `sdist`; raises BuildError (with `events` and `metadata`) on failure.

    `warm` is the build-environment warm-up's record: a covered sdist's isolated attempts use
    the shared environment made for it, or install their build requirements offline from its
    folder, first."""
    cached = _cached_outcome(node, sdist, settings)
    if cached is not None:
        return cached
    if settings.builder is BuilderKind.LOCAL:
        check_local_target(settings)
    run = _Run(node, settings, warm=warm, builder=settings.builder)
    result = _attempt_all(run, node.version, sdist)
    version, used_sdist = node.version, sdist
    if not result.ok and settings.plan.fallback_latest:
        fallback = _fallback_sdist(node, settings)
        if fallback is not None:
            version, used_sdist = fallback
            log.info("%s %s failed; fallback-latest tries %s", node.name, node.version, version)
            result = _attempt_all(run, version, used_sdist, first_number=len(run.attempts) + 1)
    if not result.ok:
        raise _failure(run, result)
    return _success(run, result, version, used_sdist)


def _attempt_all(run: _Run, version: str, sdist: Path, first_number: int = 1) -> AttemptResult:
    settings, node = run.settings, run.node
    override = settings.override(node.name)
    order = order_variants(
        settings.variant_order,
        variant_stats(settings.paths.history_db, node.name),
        override.variants,
    )
    recipe = override.recipe()
    policy = settings.attempts
    result: AttemptResult | None = None
    step = 1  # the variant ladder's position: a step down to another builder keeps it
    for i in range(1, policy.max_attempts + 1):
        number = first_number + i - 1
        variant = variant_for_attempt(order, step)
        builder = run.builder
        wait = policy.backoff(i) if i < policy.max_attempts else 0.0
        result = _attempt(run, version, sdist, number, variant, recipe if i == 1 else Recipe(),
                          backoff=wait)
        if result.ok or result.fatal:
            return result
        if run.builder is builder:
            step += 1
        if wait:
            time.sleep(wait)
    assert result is not None
    hints = _unique_hints(a.hints for a in run.attempts)
    if settings.recipes.auto_apply and hints:
        found = [Hint.from_json(h) for h in hints]
        suggestion = Recipe.from_override(recipe_from_hints(found, host_package_family()), "hints")
        if not suggestion.empty:
            number = first_number + policy.max_attempts
            detail = "auto-applied suggestions from hints: " + ", ".join(
                list(suggestion.system_packages) + [" ".join(s) for s in suggestion.steps]
            )
            run.event(
                version,
                Status.SYSTEM_RECIPE,
                detail,
                hints=[h["id"] for h in hints],
                attempt=number,
                **suggestion.to_json(),
            )
            retry = _attempt(run, version, sdist, number, order[0], recipe.merged(suggestion))
            applied = run.recipes[-1].get("applied", False) if run.recipes else False
            run.events[-2]["metadata"]["applied"] = applied
            return retry
    return result


@dataclass(frozen=True)
class _Job:
    """What one try of an attempt builds, and how: the same for every builder."""

    sdist: Path
    #: the package's fixed build folder (the same source path on every attempt)
    work: Path
    variant: Variant
    recipe: Recipe
    log_path: Path
    #: SOURCE_DATE_EPOCH of the build
    epoch: int
    env: AttemptEnv


def _attempt(
    run: _Run,
    version: str,
    sdist: Path,
    number: int,
    variant_name: str,
    recipe: Recipe,
    tried: tuple[AttemptResult, ...] = (),
    backoff: float | None = None,
) -> AttemptResult:
    """One attempt. A covered build first uses the shared environment the warm-up made, else
    installs its own offline from the warm folder; when that environment lacks a requirement
    (one the backend names at build time), the same attempt runs again in the next way
    (shared, then offline, then online; `tried` are the earlier tries), and only the last try
    counts: for the attempt budget, variant statistics and the missing-dependencies record.
    `backoff` is the wait after this attempt should it fail (None when no attempt of the ladder
    follows it)."""
    settings, node = run.settings, run.node
    # every attempt builds the file that was checked: one changed since stops the build
    sdist_sha = run.sdist_sha.get(sdist)
    if sdist_sha is None:
        sdist_sha = run.sdist_sha[sdist] = sha256_file(sdist)
    else:
        check_sdist_unchanged(sdist, sdist_sha)
    paths = settings.paths
    variant = settings.variants[variant_name]
    key = f"{node.key.rsplit('-', 1)[0]}-{version}"
    log_path = inside(paths.logs, f"{key}-attempt{number}-{variant_name}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(
        f"# refinery build of {node.name} {version}: attempt {number}, variant {variant_name}\n"
    )
    env = attempt_env(settings, run.warm, node.key, sdist_sha, variant, node.name,
                      {t.build_env for t in tried})
    with open(log_path, "a", encoding="utf-8") as fh:
        for t in tried:
            fh.write(
                f"# the {t.build_env} build environment lacked {', '.join(t.missing)} "
                f"(log: {t.log_path}): this attempt runs {env.kind}\n"
            )
        if env.shared is not None:
            fh.write(f"# build environment: the warm-up's shared one, {env.shared.path}\n")
        elif env.offline is not None and run.warm is not None:
            fh.write(f"# build environment installed offline from {run.warm.folder}\n")
    recipes_before = len(run.recipes)
    # one fixed folder per package: the same source path on every attempt and every rebuild
    work = inside(paths.builds, key)
    # a build of a run killed by SIGKILL can still be running in this folder: end it first
    proc.kill_stale_group(_pid_file(work), str(work))
    shutil.rmtree(work, ignore_errors=True)
    (work / "dist").mkdir(parents=True)
    started = time.time()
    result = AttemptResult(number, variant_name, log_path, ok=False, duration=0.0,
                           build_env=env.kind, builder=str(run.builder))
    error = ""
    run.cross_meta, run.repair_meta = {}, {}
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"# builder: {run.builder}\n")
    try:
        epoch = source_date_epoch(sdist)
        job = _Job(sdist, work, variant, recipe, log_path, epoch, env)
        if run.builder is BuilderKind.CONTAINER:
            wheel: Path | None = _container_build(run, job)
        else:
            wheel = _host_build(run, job, result)
        if wheel is not None:
            normalize_wheel(wheel, epoch)
            result.wheel = wheel
            result.build_deps = installed_build_deps(log_path)  # streamed, line by line
            result.source_date_epoch = epoch
            result.ok = True
    except (CommandError, BuildError) as exc:
        result.fatal = isinstance(exc, SdistUnpackError)
        if isinstance(exc, CommandError):
            result.exit_code = exc.returncode
        error = str(exc) if isinstance(exc, BuildError) else ""
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"refinery: {exc}\n")
    result.duration = time.time() - started
    missing = [] if result.ok else env.lacked(log_path, result.exit_code)
    if missing:
        _set_try_aside(run, result, missing, recipes_before)
        return _attempt(run, version, sdist, number, variant_name, recipe, (*tried, result),
                        backoff)
    result.duration += sum(t.duration for t in tried)
    if not result.ok:
        result.hints = [h.to_json() for h in match_log(log_path) if h.category != "advice"]
        _step_down(run, result)
        why = "timeout" if result.timed_out else f"exit {result.exit_code}"
        result.error_line = _error_line(result, error, settings.attempts.timeout)
        result.detail = f"attempt {number} ({variant_name}) failed ({why}): {result.error_line}"
        shutil.rmtree(work, ignore_errors=True)
    run.attempts.append(result)
    meta = AttemptMeta(
        attempt=number,
        variant=variant_name,
        ok=result.ok,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration=round(result.duration, 3),
        log_path=str(log_path),
        build_env=env.kind,
        builder=result.builder,
        earlier=tuple(EarlierTry(t.build_env, tuple(t.missing), str(t.log_path),
                                 round(t.duration, 3)) for t in tried),
        hints=tuple(result.hints),
        dependency_missing=any(h.get("category") == "python-dep" for h in result.hints),
        system_missing=any(h.get("apt") or h.get("dnf") for h in result.hints),
        cross_specific=result.builder == BuilderKind.CROSS and run.builder != result.builder,
        backoff=None if result.ok or result.fatal else backoff,
    )
    run.event(version, Status.ATTEMPT, "succeeded" if result.ok else result.detail,
              **meta.to_json())
    return result


def _set_try_aside(
    run: _Run, tried: AttemptResult, missing: list[str], recipes_before: int
) -> None:
    """A try whose build environment lacked `missing`: keep its log aside, in
    `logs/<build_env>/` (out of the attempt logs, so neither hints nor the missing-dependencies
    record see its "No matching distribution"), and forget its recipe record; the attempt is
    then run again in the next way."""
    kept = inside(run.settings.paths.logs / tried.build_env, tried.log_path.name)
    kept.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tried.log_path, kept)
    del run.recipes[recipes_before:]
    log.info(
        "%s attempt %d: the %s build environment lacks %s; trying again",
        run.node.name,
        tried.number,
        tried.build_env,
        ", ".join(missing),
    )
    tried.log_path, tried.missing = kept, missing


def _host_build(run: _Run, job: _Job, result: AttemptResult) -> Path | None:
    """One attempt that compiles on this host, from a fixed source folder: for this host
    (local) or for the target (cross); None if the build itself failed.

    Then the steps every builder takes: repair and the tag `auditwheel show` confirms
    (repair.py), the smoke import on the target's arch (here for local, in the target image
    under qemu for cross), and the caller normalises."""
    settings = run.settings
    work, recipe, log_path, shared = job.work, job.recipe, job.log_path, job.env.shared
    cross = run.builder is BuilderKind.CROSS
    python = interpreter_for(settings.target.python)
    src = extract_sdist(job.sdist, work / "src")
    packages: tuple[str, ...] = ()
    if cross and not recipe.empty:
        record, packages = cross_recipe(recipe, settings, log_path)
        run.recipes.append(record)
    tools = tools_for(settings, packages, log_path) if cross else None
    # setuptools replaces the interpreter's flags by CFLAGS; meson and CMake add CFLAGS to
    # their own (release) flags, so they get only what the refinery adds
    reqs = read_build_requires(job.sdist)
    flags = ""
    if not reqs.backend.startswith(OWN_FLAGS_BACKENDS):
        flags = tools.python.cflags if tools else _interpreter_cflags(python)
    env = _build_env(run.node.name, settings, job.variant, work, recipe, src, job.epoch, flags)
    env.update(job.env.offline or {})
    if not cross and not recipe.empty:
        run.recipes.append(apply_on_host(recipe, settings.recipes, log_path, work, env))
    dist_dir = work / "dist"
    ldpaths: tuple[Path, ...] = ()
    override = settings.override(run.node.name)
    if tools is not None:
        run.cross_meta = dict(tools.provenance())
        libraries = target_libraries_for(tools, override.to_json(), settings, log_path)
        if libraries:
            run.cross_meta["target_libraries"] = [
                f"{b.library.name} {b.library.version}" for b in libraries]
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"# cross build: zig {tools.toolchain.version} -target "
                     f"{tools.toolchain.target}, target Python {tools.python.version} from "
                     f"{tools.python.image}\n")
        res, _ = run_cross_build(
            tools, reqs, src, work, env, log_path, python=python,
            env_python=shared.python if shared is not None else None,
            isolation=job.variant.isolation, timeout=settings.attempts.timeout,
            pid_file=_pid_file(work), config_settings=override.config_settings,
            libraries=tuple(b.prefix for b in libraries),
        )
        ldpaths = tuple(tools.python.lib_dirs)
    else:
        if shared is not None:
            argv = [python, build_in_env.__file__, "--python", str(shared.python)]
        else:
            argv = [python, "-m", "build", "--wheel"]
        argv += [a for c in override.config_settings for a in ("--config-setting", c)]
        argv += ["--outdir", str(dist_dir)]
        if not job.variant.isolation:
            argv.append("--no-isolation")
        argv.append(str(src))
        res = proc.run(
            argv,
            log_path=log_path,
            env=env,
            cwd=work,
            timeout=settings.attempts.timeout,
            check=False,
            pid_file=_pid_file(work),
        )
    result.exit_code, result.timed_out = res.returncode, res.timed_out
    if res.returncode != 0 or res.timed_out:
        return None
    built = _single_wheel(dist_dir)
    if cross:
        from .container_attempt import check_wheel_arch

        check_wheel_arch(built, settings.target.arch, log_path)
    repaired = repair_wheel(built, settings.target, work, log_path, ldpaths)
    run.repair_meta = repaired.metadata() if cross else {}
    wheel = repaired.wheel
    if cross:
        smoke = _cross_smoke(run, wheel, work, log_path)
    else:
        paths = settings.paths
        smoke = smoke_import(
            settings, wheel, (paths.wheels, paths.downloads, paths.output, paths.input)
        )
    run.smoke = smoke
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"smoke import of {', '.join(smoke['modules'])}: {smoke}\n")
    if smoke.get("ok") is False:
        raise BuildError(f"smoke import failed: {smoke.get('detail', '')}", log_path)
    return wheel


def _cross_smoke(run: _Run, wheel: Path, work: Path, log_path: Path) -> dict[str, Any]:
    """Import the cross-built wheel in the target image under qemu, network off, before it
    lands; a module that does not import fails the attempt with the import error."""
    from .container_attempt import smoke_in_container

    settings = run.settings
    c = settings.container
    assert c is not None
    paths = settings.paths
    # runtime dependencies: built or fetched this run, or reused from the input
    links = [p for p in (paths.wheels, paths.downloads, paths.output, paths.input) if p.is_dir()]
    return smoke_in_container(
        wheel, work / "smoke-run", engine=c.engine,
        image=run.cross_meta.get("target_python_image", ""), arch=settings.target.arch,
        python_tag=settings.target.python_tag, log_path=log_path, find_links=links,
        timeout=settings.attempts.timeout,
    )


def _step_down(run: _Run, result: AttemptResult) -> None:
    """The fallback ladder: a cross attempt that failed for a cross-specific reason (a hint of
    category `cross`: a target program run at build time, a library missing from the
    target's files) sends the next attempts to the container builder."""
    if run.builder is not BuilderKind.CROSS or run.settings.container is None:
        return
    cross_hints = [h["id"] for h in result.hints if h.get("category") == "cross"]
    if not cross_hints:
        return
    run.builder = BuilderKind.CONTAINER
    with open(result.log_path, "a", encoding="utf-8") as fh:
        fh.write(f"refinery: cross-specific failure ({', '.join(cross_hints)}): the next "
                 "attempt runs in the container builder\n")


def _container_build(run: _Run, job: _Job) -> Path:
    """One attempt in a fresh container of the target architecture (recipes run inside)."""
    from .container_attempt import build_in_container
    from .container_images import ensure_image

    settings, c = run.settings, run.settings.container
    assert c is not None
    recipe, log_path = job.recipe, job.log_path
    target = settings.target
    image = ensure_image(
        c.engine,
        c.preset or None,
        target.arch,
        Path(c.image_cache) if c.image_cache else None,
        image=c.image or None,
        log_path=log_path,
    )
    # the build's own variables only: the host's environment stays out of the container
    env = _build_vars(run.node.name, settings, job.variant, job.work, recipe, job.epoch)
    env.update(job.env.offline or {})
    packages, steps = recipe.system_packages, recipe.steps
    if not recipe.empty:
        policy = settings.recipes
        skipped = (
            "recipes disabled (--no-system-recipes)"
            if not policy.enabled
            else "dry run (--dry-run-recipes)"
            if policy.dry_run
            else ""
        )
        record = {**recipe.to_json(), "applied": not skipped, "where": "container"}
        if skipped:
            record["skipped"] = skipped
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(f"recipe not run ({skipped}): {recipe.to_json()}\n")
            packages, steps = (), ()
        run.recipes.append(record)
    res = build_in_container(
        job.sdist,
        job.work,
        engine=c.engine,
        image=image,
        preset=c.preset or None,
        arch=target.arch,
        target_platform_tag=target.platform_tag,
        python_tag=target.python_tag,
        variant="isolated" if job.variant.isolation else "no-isolation",
        system_packages=packages,
        recipe_steps=steps,
        env=env,
        cpu=c.cpu or None,
        memory=c.memory or None,
        log_path=log_path,
        timeout=settings.attempts.timeout,
        network=c.network,
        find_links=[settings.paths.wheels, settings.paths.downloads],
        config_settings=settings.override(run.node.name).config_settings,
    )
    run.container_meta = res.metadata()
    return res.wheel


def _cached_outcome(node: PlanNode, sdist: Path, settings: Settings) -> Outcome | None:
    paths = settings.paths
    sdist_sha = sha256_file(sdist)
    record_path = inside(
        paths.wheel_records, f"{node.key}-{build_digest(node, settings, sdist_sha)}.json"
    )
    if not record_path.exists():
        return None
    rec = read_json(record_path)
    wheel = paths.wheels / rec["wheel"]
    if not wheel.exists() or sha256_file(wheel) != rec["sha256"]:
        return None
    # a package needed only to build others stays in the cache (plan.py: build_only)
    # a copy, not a hard link: a change to one (in place) must not change the other
    dest = wheel if node.build_only else place_wheel(wheel, paths.output, rec["sha256"])
    meta = {**rec.get("metadata", {}), "cached_from": rec.get("built_at")}
    detail = f"wheel built earlier from the same sdist and settings: {dest.name}"
    return Outcome(
        node.name,
        rec.get("version", node.version),
        Status.CACHED,
        path=str(dest),
        detail=detail,
        sha256=rec["sha256"],
        wheel=dest.name,
        metadata=meta,
        events=[new_event(node.name, node.version, Status.CACHED, detail, **meta)],
    )


def _success(run: _Run, result: AttemptResult, version: str, sdist: Path) -> Outcome:
    node, settings = run.node, run.settings
    assert result.wheel is not None
    sha = sha256_file(result.wheel)
    cached = place_wheel(result.wheel, settings.paths.wheels, sha, link=True)
    dest = cached if node.build_only else place_wheel(result.wheel, settings.paths.output, sha)
    total = sum(a.duration for a in run.attempts)
    meta = _metadata(run, result, sdist) | {
        "duration": round(total, 3),
        "build_deps": result.build_deps,
        "source_date_epoch": result.source_date_epoch,
        "tags": sorted(str(t) for t in parse_wheel_filename(dest.name)[3]),
    }
    detail = f"built {dest.name} from {sdist.name} (attempt {result.number}, {result.variant})"
    # what the build went without (hints of category `advice` in its log)
    advice = [h.to_json() for h in match_log(result.log_path) if h.category == "advice"]
    if advice:
        meta["advice"] = advice
        detail += "; advice: " + "; ".join(_hint_summary(h) for h in advice)
    meta["fallback_from"] = node.version if version != node.version else ""
    if version != node.version:
        detail += (
            f"; fallback-latest: {node.version} failed every attempt, {version} is the "
            f"newest version every dependent allows"
        )
    record = inside(
        settings.paths.wheel_records,
        f"{node.key}-{build_digest(node, settings, sha256_file(sdist))}.json",
    )
    write_json(
        record,
        {
            "wheel": cached.name,
            "sha256": sha,
            "version": version,
            "metadata": meta,
            "built_at": time.time(),
        },
    )
    shutil.rmtree(result.wheel.parent.parent, ignore_errors=True)
    run.event(version, Status.BUILT, detail, **meta)
    return Outcome(
        node.name,
        version,
        Status.BUILT,
        path=str(dest),
        detail=detail,
        sha256=sha,
        wheel=dest.name,
        metadata=meta,
        events=run.events,
    )


def _failure(run: _Run, result: AttemptResult) -> BuildError:
    node = run.node
    hints = _unique_hints(a.hints for a in run.attempts)
    meta = _metadata(run, result, None) | {
        "duration": round(sum(a.duration for a in run.attempts), 3),
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "missing_python_deps": python_deps_from_hints_json(hints),
    }
    reason = f"{len(run.attempts)} attempt(s) failed; last: {result.detail}"
    if hints:
        reason += "; hints: " + "; ".join(_hint_summary(h) for h in hints[:5])
    # the one line a person reads (summary, progress, panel); the manifest keeps the story
    detail = failure_line(result.error_line, hints, result.log_path)
    meta |= {"reason": reason, "error_line": result.error_line}
    run.event(node.version, Status.FAILED, detail, **meta)
    return BuildError(detail, result.log_path, hints, events=run.events, metadata=meta)


def _metadata(run: _Run, result: AttemptResult, sdist: Path | None) -> dict[str, Any]:
    return {
        "variant": result.variant,
        "attempt": result.number,
        "attempts": len(run.attempts),
        "log_path": str(result.log_path),
        "logs": [str(a.log_path) for a in run.attempts],
        "hints": _unique_hints(a.hints for a in run.attempts),
        "recipes": run.recipes,
        # the builder of this attempt: the one that landed the wheel, or failed last
        "builder": result.builder or str(run.settings.builder),
        **run.cross_meta,
        **run.repair_meta,
        **({"smoke": run.smoke} if run.smoke else {}),
        **run.container_meta,
        "needed_by": list(run.node.needed_by),
        **({"sdist": sdist.name, "sdist_sha256": sha256_file(sdist)} if sdist else {}),
    }


def failure_line(error_line: str, hints: list[dict[str, Any]], log_path: Path | None) -> str:
    """A failed build's reason in one line: what went wrong, the first hint (what to
    install), where the log is, e.g. `x.c:3:10: fatal error: zstd.h: No such file or
    directory — hint: Zstandard headers are missing (zstd; apt: libzstd-dev; dnf:
    libzstd-devel) — log: /cache/logs/x-1.0-attempt1-isolated.log`."""
    parts = [error_line or "failed (no error line in the log)"]
    if hints:
        first = hints[0]
        what = [str(first["id"])]
        what += [f"{family}: {' '.join(first[family])}" for family in ("apt", "dnf")
                 if first.get(family)]
        note = " ".join(str(first.get("note", "")).split()).rstrip(".")
        label = f"{note} ({'; '.join(what)})" if note else "; ".join(what)
        more = f" (+{len(hints) - 1} more in the manifest)" if len(hints) > 1 else ""
        parts.append(f"hint: {label}{more}")
    if log_path is not None:
        parts.append(f"log: {log_path}")
    return REASON_SEP.join(parts)


def _error_line(result: AttemptResult, error: str, timeout: float | None) -> str:
    """One attempt's failure in one line: a timeout says so, a failure the refinery
    diagnosed (smoke import, repair, a container stage) has its own words, anything else is
    the first real error of its log."""
    if result.timed_out and timeout:
        return f"timeout: killed after {timeout:g} s"
    if error:
        return " ".join(error.split())
    return first_error_line(result.log_path) or "see the log"


def _hint_summary(hint: dict[str, Any]) -> str:
    pkgs = []
    if hint.get("apt"):
        pkgs.append("apt: " + " ".join(hint["apt"]))
    if hint.get("dnf"):
        pkgs.append("dnf: " + " ".join(hint["dnf"]))
    line = " ".join(str(hint.get("line", "")).split())[:140]
    where = f"log line {hint.get('line_no')}: {line}"
    return f"{hint['id']} ({where}{'; ' + ', '.join(pkgs) if pkgs else ''})"


def _unique_hints(groups) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for group in groups:
        for hint in group:
            seen.setdefault(hint["id"], hint)
    return list(seen.values())


def python_deps_from_hints_json(hints: list[dict[str, Any]]) -> list[str]:
    return python_deps_from_hints([Hint.from_json(h) for h in hints])


def _fallback_sdist(node: PlanNode, settings: Settings) -> tuple[str, Path] | None:
    """Newest other version every dependent allows, with an sdist on the index."""
    try:
        specs = [SpecifierSet(s) for s in node.specifiers]
    except InvalidSpecifier:
        return None
    index = settings.index()
    try:
        releases = index.releases(node.name)
    except IndexAccessError:
        return None
    current = Version(node.version)
    for ver in candidate_versions(releases, settings.target.python):
        if ver == current or ver.is_prerelease or not all(s.contains(ver) for s in specs):
            continue
        sdists = [r for r in releases if r.version == ver and r.kind == "sdist"]
        if sdists:
            try:
                return str(ver), index.download(sdists[0].file, settings.paths.downloads)
            except IndexAccessError:
                return None
    return None


def _build_vars(
    name: str, settings: Settings, variant, work: Path, recipe: Recipe, epoch: int
) -> dict[str, str]:
    """What every builder sets for a build: indexes, source date, build-dep policy and pins,
    the variant's and the recipe's variables."""
    env = pip_vars(settings)
    env["SOURCE_DATE_EPOCH"] = str(epoch)
    if variant.isolation and settings.binary_build_deps:
        env["PIP_ONLY_BINARY"] = ":all:"
    pins = build_pins(settings, name, variant)
    if pins:
        work.mkdir(parents=True, exist_ok=True)
        (work / "constraints.txt").write_text("\n".join(pins) + "\n")
        env["PIP_CONSTRAINT"] = str(work / "constraints.txt")
    env.update(variant.env)
    env.update(recipe.env)
    return env


def _build_env(
    name: str,
    settings: Settings,
    variant,
    work: Path,
    recipe: Recipe,
    src: Path,
    epoch: int,
    default_cflags: str = "",
) -> dict[str, str]:
    """The environment of a build on this host: the allow-listed part of the host's
    (`safe_env`), plus the build's. CFLAGS/CXXFLAGS replace the interpreter's compile flags
    in setuptools, so unless a variant, a recipe or the caller sets them they start from
    `default_cflags` (the interpreter's own: -O2 and the rest; without them zig builds
    unoptimised, with its debug runtime linked in)."""
    env = build_base_env(settings.pass_env)  # allow-listed: no token, no host pip config
    env.update(_build_vars(name, settings, variant, work, recipe, epoch))
    # compiled-in paths name the project, not this cache, so another cache builds the same bytes
    prefix_map = f"-ffile-prefix-map={src}=/usr/src/{src.name}"
    for flag in ("CFLAGS", "CXXFLAGS"):
        base = env[flag] if flag in env else default_cflags
        env[flag] = f"{base} {prefix_map}".strip()
    return env


def _interpreter_cflags(python: str) -> str:
    """The compile flags the build interpreter was built with (its sysconfig CFLAGS)."""
    if python != sys.executable:
        return ""
    return " ".join(str(sysconfig.get_config_var("CFLAGS") or "").split())


def _pid_file(work: Path) -> Path:
    """A running build's process group, next to its folder (which every attempt removes)."""
    return work.with_name(f"{work.name}.pgid")


def _single_wheel(folder: Path) -> Path:
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one wheel in {folder}, found {len(wheels)}")
    return wheels[0]

