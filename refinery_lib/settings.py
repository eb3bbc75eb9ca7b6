"""Settings: the validated Snakemake config turned into typed values and resolved paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Self, TypeVar, overload

from packaging.utils import canonicalize_name

from .attempts import AttemptPolicy, Variant
from .config import defaults, merge
from .errors import ConfigError
from .index import SimpleIndex
from .overrides import PackageOverride, cross_overrides, parse_overrides
from .plan import PlanSettings
from .recipes import RecipePolicy
from .safe_env import PassEnvError, check_pass_env
from .targets import Target, host_arch

_T = TypeVar("_T")


class _Below(Generic[_T]):
    """A path of `WorkflowFiles` or `Paths`: `relative` below the folder their attribute
    `base` names (RESULTS unless said). Read on an instance it is that path (`_File`) or a
    function of a package's key (`_PerKey`); read on the class it is this table entry
    (`Paths.plan.relative`)."""

    def __init__(self, relative: str, base: str = "results") -> None:
        self.relative = relative
        self.base = base

    @overload
    def __get__(self, paths: None, owner: type) -> Self: ...

    @overload
    def __get__(self, paths: Any, owner: type) -> _T: ...

    def __get__(self, paths: Any, owner: type) -> Self | _T:
        return self if paths is None else self.at(getattr(paths, self.base))

    def at(self, folder: Path) -> _T:
        raise NotImplementedError


class _File(_Below[Path]):
    def at(self, folder: Path) -> Path:
        return folder / self.relative


class _PerKey(_Below[Callable[[str], Path]]):
    """`relative` names `{key}`: the rules pass the pattern "{key}" itself."""

    def at(self, folder: Path) -> Callable[[str], Path]:
        return lambda key: folder / self.relative.format(key=key)


@dataclass(frozen=True)
class WorkflowFiles:
    """The workflow's own files under RESULTS: what each rule writes (its output, log and
    benchmark), the failure records and the missing-dependencies record. The rules name them
    relative to Snakemake's working directory (`WorkflowFiles(Path(config["results"]))`), the
    code through `Settings.paths`; no other module spells these names."""

    results: Path

    inventory = _File("scan/inventory.json")
    plan = _File("plan/plan.json")
    reuse_record = _File("reuse/reused.json")
    fetch_record = _File("fetch/fetched.json")
    #: the warm-up's record (rule prepare_build_env)
    buildenv_record = _File("buildenv/warm.json")
    #: the sdist of one build, downloaded (rule fetch_sdist)
    sdist_record = _PerKey("sdists/{key}.json")
    #: the outcome of one build (rule build_wheel), and its job's peak memory and duration
    outcome = _PerKey("outcomes/{key}.json")
    benchmark = _PerKey("benchmarks/build_wheel/{key}.tsv")
    #: what a failed job of a package (its fetch, its sdist's fetch, its build) leaves: not a
    #: rule's output, since Snakemake removes a failed job's outputs. The job that writes it
    #: removes it when it starts; the aggregation after failed jobs reads it
    #: (aggregate.read_outcomes)
    failures = _File("failures")
    failure = _PerKey("{key}.json", base="failures")
    #: Python dependencies failed builds were missing (missing_deps.py): an input of the plan
    missing_deps = _File("missing_deps/missing_deps.json")
    #: the mark of a finished aggregation (rule aggregate)
    complete = _File("aggregate/complete.json")
    job_logs = _File("logs")

    def job_log(self, job: str) -> Path:
        """The log of one job: a rule's name (`scan`, `build_wheel/{key}`), or Snakemake's own
        (`snakemake-<run id>`)."""
        return self.job_logs / f"{job}.log"


@dataclass(frozen=True)
class Paths(WorkflowFiles):
    """Every folder and file the workflow touches, in one place: the user's folders, the
    cache's, and the workflow's own under RESULTS (`WorkflowFiles`)."""

    input: Path
    output: Path
    cache: Path
    manifest: Path
    history_db: Path

    downloads = _File("downloads", base="cache")
    wheels = _File("wheels", base="cache")
    #: what each cached wheel was built from (build.py): `<node key>-<build digest>.json`
    wheel_records = _File(".records", base="wheels")
    #: build requirements as wheels, downloaded once by the warm-up for offline builds
    buildenv = _File("buildenv/wheels", base="cache")
    #: build environments the warm-up made once, shared by the local builder's builds
    venvs = _File("buildenv/venvs", base="cache")
    #: every build attempt's log
    logs = _File("logs", base="cache")
    builds = _File("build", base="cache")
    #: a PEP 503 index of the output wheels
    simple_index = _File("simple", base="output")
    #: the story of each built wheel: its sdist and its build
    provenance = _File("provenance", base="output")


class BuilderKind(StrEnum):
    """Who compiles: this host for itself, a container of the target arch, or this host for
    the target (cross). `auto` is resolved when settings are read, never kept."""

    AUTO = "auto"
    LOCAL = "local"
    CONTAINER = "container"
    CROSS = "cross"


def _pass_env(names) -> tuple[str, ...]:
    try:
        return check_pass_env(names)
    except PassEnvError as exc:
        raise ConfigError(str(exc)) from None


def resolve_builder(kind: str, target: Target, has_image: bool) -> BuilderKind:
    """auto: local for `native`, container when an image or preset is named, local for the
    host's arch, else cross. (Under `snakemake --use-singularity` a preset or image names the
    build rule's container, and the target is often native.)"""
    chosen = BuilderKind(kind)
    if chosen is not BuilderKind.AUTO:
        return chosen
    if target.is_native:
        return BuilderKind.LOCAL
    if has_image:
        return BuilderKind.CONTAINER
    if target.is_native or target.arch == host_arch():
        return BuilderKind.LOCAL
    return BuilderKind.CROSS


@dataclass(frozen=True)
class ContainerSettings:
    engine: str = "podman"
    preset: str = ""
    image: str = ""
    cpu: str = ""
    memory: str = ""
    network: bool = True
    image_cache: str = ""


@dataclass(frozen=True)
class Settings:
    paths: Paths
    target: Target
    plan: PlanSettings
    index_url: str
    extra_index_urls: tuple[str, ...]
    trusted_hosts: tuple[str, ...]
    builder: BuilderKind = BuilderKind.LOCAL
    #: the target-arch image: the container builder's, or the cross builder's (its target
    #: Python, its smoke import, and the container step-down of a cross-specific failure)
    container: ContainerSettings | None = None
    attempts: AttemptPolicy = field(default_factory=AttemptPolicy)
    variants: dict[str, Variant] = field(default_factory=dict)
    variant_order: tuple[str, ...] = ("isolated",)
    binary_build_deps: bool = True
    shared_build_env: bool = True
    #: host variables a build gets besides `safe_env.PASSED` (never the worker's token)
    pass_env: tuple[str, ...] = ()
    recipes: RecipePolicy = field(default_factory=RecipePolicy)
    #: per package (canonical name): the user's override, else the cross builder's default
    overrides: dict[str, PackageOverride] = field(default_factory=dict)
    closure_check: bool = True

    @classmethod
    def from_config(cls, config: dict[str, Any], base: Path | None = None) -> Settings:
        base = Path(base or Path.cwd())
        # a key the config leaves out has config/config.yaml's value: the one table of defaults
        config = merge(defaults(), config)

        def resolve(value: str) -> Path:
            p = Path(value).expanduser()
            return p if p.is_absolute() else (base / p)

        cache = resolve(config["cache"])
        output = resolve(config["output"])
        paths = Paths(
            input=resolve(config["input"]),
            output=output,
            cache=cache,
            results=resolve(config["results"]),
            manifest=resolve(config["manifest"])
            if config.get("manifest")
            else output / "manifest.json",
            history_db=resolve(config["history_db"])
            if config.get("history_db")
            else cache / "history.db",
        )
        tgt = config["target"]
        strat = config["strategy"]
        idx = config["index"]
        builder = config["builder"]
        build = config["build"]
        rec = config["recipes"]
        variants = {
            name: Variant.from_config(name, data or {})
            for name, data in build["variants"].items()
        }
        target = Target(str(tgt["python"]), tgt["platform_tag"])
        has_image = bool(builder.get("preset") or builder.get("image"))
        kind = resolve_builder(builder["kind"], target, has_image)
        container = None
        if kind in (BuilderKind.CONTAINER, BuilderKind.CROSS):
            if kind is BuilderKind.CONTAINER and not has_image:
                raise ConfigError("the container builder needs a preset or an image")
            if target.is_native:
                raise ConfigError(f"the {kind} builder needs a real --platform-tag, not native")
            container = ContainerSettings(
                engine=builder["engine"],
                # the cross builder takes the target's Python from the debian image by default
                preset=builder["preset"] or ("" if has_image else "debian"),
                image=builder["image"],
                cpu=str(builder.get("cpu") or ""),
                memory=str(builder.get("memory") or ""),
                network=bool(builder["network"]),
                image_cache=builder["image_cache"],
            )
        overrides = parse_overrides(config.get("overrides"))
        order = tuple(build.get("variant_order") or list(variants))
        unknown = [v for v in order if v not in variants]
        for override in overrides.values():
            unknown += [v for v in override.variants if v not in variants]
        if unknown:
            raise ConfigError(
                f"unknown build variant(s) {', '.join(unknown)}; known: " + ", ".join(variants)
            )
        if kind is BuilderKind.CROSS:
            overrides = {**cross_overrides(), **overrides}
        no_binary = tuple(
            n if n == ":all:" else canonicalize_name(n) for n in strat["no_binary"]
        )
        plan = PlanSettings(
            upgrade_strategy=strat["upgrade"],
            fallback_latest=bool(strat["fallback_latest"]),
            expansion_depth=int(strat["expansion_depth"]),
            no_binary=no_binary,
            extras={canonicalize_name(k): tuple(v) for k, v in (strat.get("extras") or {}).items()},
            pins={k: o.version for k, o in overrides.items() if o.version},
            skip_known_failures=bool(strat["skip_known_failures"]),
        )
        return cls(
            paths=paths,
            target=target,
            plan=plan,
            index_url=idx["url"],
            extra_index_urls=tuple(idx["extra_urls"]),
            trusted_hosts=tuple(idx["trusted_hosts"]),
            builder=kind,
            container=container,
            attempts=AttemptPolicy(
                max_attempts=int(build["max_attempts"]),
                timeout=float(build["attempt_timeout"]),
                backoff_base=float(build["backoff_base"]),
                backoff_max=float(build["backoff_max"]),
            ),
            variants=variants,
            variant_order=order,
            binary_build_deps=bool(build["binary_build_deps"]),
            shared_build_env=bool(build["shared_build_env"]),
            pass_env=_pass_env(build.get("pass_env") or ()),
            # the switches are named as in the config, but for auto_apply_suggestions
            recipes=RecipePolicy(
                auto_apply=bool(rec["auto_apply_suggestions"]),
                **{k: bool(rec[k]) for k in ("enabled", "allow_system", "dry_run")},
            ),
            overrides=overrides,
            closure_check=bool(config["closure_check"]),
        )

    def override(self, name: str) -> PackageOverride:
        """The override of package `name` (its canonical name); an empty one when it has none."""
        return self.overrides.get(name, PackageOverride())

    def index(self) -> SimpleIndex:
        return SimpleIndex(self.index_url, self.extra_index_urls, self.trusted_hosts)

    def pip_index_env(self) -> dict[str, str]:
        """PIP_* variables so pip inside builds sees the same indexes (and nothing else)."""
        env = {"PIP_INDEX_URL": self.index_url, "PIP_FIND_LINKS": str(self.paths.wheels)}
        if self.extra_index_urls:
            env["PIP_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        if self.trusted_hosts:
            env["PIP_TRUSTED_HOST"] = " ".join(self.trusted_hosts)
        return env
