"""Settings: the validated Snakemake config turned into typed values and resolved paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from .attempts import AttemptPolicy, Variant
from .config import defaults, merge
from .errors import ConfigError
from .index import SimpleIndex
from .plan import PlanSettings
from .recipes import RecipePolicy
from .safe_env import PassEnvError, check_pass_env
from .targets import Target, host_arch


@dataclass(frozen=True)
class Paths:
    """Every folder and file the workflow touches, in one place."""

    input: Path
    output: Path
    cache: Path
    results: Path
    manifest: Path
    history_db: Path

    @property
    def downloads(self) -> Path:
        return self.cache / "downloads"

    @property
    def wheels(self) -> Path:
        return self.cache / "wheels"

    @property
    def buildenv(self) -> Path:
        """Build requirements as wheels, downloaded once by the warm-up for offline builds."""
        return self.cache / "buildenv" / "wheels"

    @property
    def venvs(self) -> Path:
        """Build environments the warm-up made once, shared by the local builder's builds."""
        return self.cache / "buildenv" / "venvs"

    @property
    def logs(self) -> Path:
        return self.cache / "logs"

    @property
    def builds(self) -> Path:
        return self.cache / "build"

    @property
    def failures(self) -> Path:
        return self.results / "failures"

    @property
    def requeue(self) -> Path:
        return self.results / "requeue" / "requeue.json"

    @property
    def simple_index(self) -> Path:
        return self.output / "simple"


CROSS_OVERRIDES = Path(__file__).resolve().parent / "data" / "cross_overrides.yaml"


def cross_overrides() -> dict[str, dict[str, Any]]:
    """The cross builder's default per-package settings (data/cross_overrides.yaml)."""
    import yaml

    data = yaml.safe_load(CROSS_OVERRIDES.read_text()) or {}
    return {canonicalize_name(k): v for k, v in (data.get("overrides") or {}).items()}


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
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        order = tuple(build.get("variant_order") or list(variants))
        unknown = [v for v in order if v not in variants]
        for data in (config.get("overrides") or {}).values():
            unknown += [v for v in (data or {}).get("variants") or () if v not in variants]
        if unknown:
            raise ConfigError(
                f"unknown build variant(s) {', '.join(unknown)}; known: " + ", ".join(variants)
            )
        overrides = {canonicalize_name(k): v for k, v in (config.get("overrides") or {}).items()}
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
            pins={k: str(v["version"]) for k, v in overrides.items() if v.get("version")},
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
            recipes=RecipePolicy(
                enabled=bool(rec["enabled"]),
                allow_system=bool(rec["allow_system"]),
                dry_run=bool(rec["dry_run"]),
                auto_apply=bool(rec["auto_apply_suggestions"]),
            ),
            overrides=overrides,
            closure_check=bool(config["closure_check"]),
        )

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
