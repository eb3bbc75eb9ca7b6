"""Per-package overrides: what a config may say about one package's build, validated once.

Three places write them, and all three are read through `PackageOverride.from_config`: the
user's config (`overrides:`, keyed by package name), the cross builder's defaults
(`data/cross_overrides.yaml`, applied to a package the user has no entry for) and the retry
worker, which lays each queued recipe over the user's entry. A key that is not a field of
`PackageOverride`, or a value of the wrong shape, is a `ConfigError` of one line naming the
source, the package and the key. The config's JSON schema (config/schemas/config.schema.yaml,
`overrides.additionalProperties`) lists the same keys; tests/unit/test_overrides.py keeps the
two in step.

`to_json` gives back the mapping the config wrote, key for key and in its order: it is hashed
into a build's cache digest and is part of the build rule's params (`build.BuildIdentity`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name

from .errors import ConfigError
from .recipes import Recipe

#: the cross builder's per-package defaults
CROSS_OVERRIDES = Path(__file__).resolve().parent / "data" / "cross_overrides.yaml"


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {type(value).__name__}")
    return value


def _texts(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, not {value!r}")
    return tuple(value)


def _variables(where: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where} must map variable names to strings, not {value!r}")
    return dict(value)


def _steps(where: str, value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where} must be a list of commands, not {value!r}")
    steps = tuple(_texts(f"{where}[{i}]", step) for i, step in enumerate(value))
    empty = [i for i, step in enumerate(steps) if not step]
    if empty:
        raise ConfigError(f"{where}[{empty[0]}] is an empty command")
    return steps


def _settings(where: str, value: Any) -> tuple[str, ...]:
    settings = _texts(where, value)
    for setting in settings:
        key, eq, _ = setting.partition("=")
        if not key or not eq:
            raise ConfigError(f"{where}: {setting!r} is not KEY=VALUE")
    return settings


@dataclass(frozen=True)
class PackageOverride:
    """One package's settings: a version pin, its build's variables, a recipe, the variants
    to try, pins on its build dependencies, PEP 517 config settings and the cross builder's
    target libraries. Every field empty is no override."""

    #: the version to plan instead of the one the input (or the index) gives
    version: str = field(default="", metadata={"read": _text})
    #: environment variables of this package's build
    env: dict[str, str] = field(default_factory=dict, metadata={"read": _variables})
    #: system packages installed in the builder before building (dnf or apt names)
    system_packages: tuple[str, ...] = field(default=(), metadata={"read": _texts})
    #: commands (argument lists) run in the builder before building
    recipe_steps: tuple[tuple[str, ...], ...] = field(default=(), metadata={"read": _steps})
    #: the build variants to try, in this order (instead of the order learned from history)
    variants: tuple[str, ...] = field(default=(), metadata={"read": _texts})
    #: pip constraints on this package's build dependencies
    build_constraints: tuple[str, ...] = field(default=(), metadata={"read": _texts})
    #: PEP 517 config settings, KEY=VALUE (build's -C), passed by every builder
    config_settings: tuple[str, ...] = field(default=(), metadata={"read": _settings})
    #: target libraries the cross builder builds from source (data/target_libraries.yaml)
    target_libraries: tuple[str, ...] = field(default=(), metadata={"read": _texts})
    #: the keys the config spelled out, in its order: `to_json` writes these even when empty,
    #: so the mapping read is the mapping given back. How it was written, not what it says:
    #: left out of ==.
    named: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_config(cls, package: str, data: Any, source: str = "config") -> PackageOverride:
        """The override of `package` from its config mapping; a ConfigError naming `source`,
        the package and the key for an unknown key or a value of the wrong shape."""
        where = f"{source}: overrides.{package}"
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping of settings, not "
                              f"{type(data).__name__}")
        unknown = [repr(k) for k in data if k not in _READERS]
        if unknown:
            raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(unknown)} (known: {', '.join(KEYS)})")
        values: dict[str, Any] = {k: _READERS[k](f"{where}.{k}", v) for k, v in data.items()}
        return cls(**values, named=tuple(data))

    def to_json(self) -> dict[str, Any]:
        """The config mapping of this override: the keys it was read with, in their order,
        then any other field not at its default; tuples as lists."""
        keys = [*self.named, *(k for k in KEYS if k not in self.named and getattr(self, k))]
        return {k: _plain(getattr(self, k)) for k in keys}

    def recipe(self) -> Recipe:
        """The recipe this override asks for: its system packages, steps and variables."""
        return Recipe(self.system_packages, self.recipe_steps, dict(self.env))


#: each key an override may have (a field of PackageOverride) and how its value is read
_READERS: dict[str, Callable[[str, Any], Any]] = {
    f.name: f.metadata["read"] for f in fields(PackageOverride) if "read" in f.metadata
}
#: the keys an override may have, in the fields' order
KEYS = tuple(_READERS)


def parse_overrides(data: Any, source: str = "config") -> dict[str, PackageOverride]:
    """The `overrides:` mapping of a config, keyed by canonical package name."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: overrides must be a mapping of package names, not "
                          f"{type(data).__name__}")
    return {canonicalize_name(str(name)): PackageOverride.from_config(str(name), entry, source)
            for name, entry in data.items()}


def cross_overrides() -> dict[str, PackageOverride]:
    """The cross builder's default per-package settings (data/cross_overrides.yaml)."""
    data = yaml.safe_load(CROSS_OVERRIDES.read_text()) or {}
    return parse_overrides(data.get("overrides"), source=str(CROSS_OVERRIDES))


def _plain(value: Any) -> Any:
    """A field's value as JSON: tuples (nested too) as lists, a mapping as a dict."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value
