"""Build requirements: what an sdist needs installed to be built, and how pip gets it.

`read_build_requires` reads `[build-system]` from an sdist without unpacking it (PEP 517/518's
default when there is none). A build's build dependencies are pinned by its variant's
constraints and its package's override (`build_pins`); `first_isolated_pins` are the pins of
the first attempt that installs a build environment, which the warm-up downloads for.
`pip_vars` are the pip variables of every build and of the warm-up: the settings' indexes and
the refinery's caches, never this host's pip configuration.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from .attempts import Variant, order_variants, variant_stats
from .errors import InvalidWheelError
from .settings import Settings
from .wheels import sdist_members

#: PEP 517/518: a project without `[build-system]` is built as if it named these
DEFAULT_REQUIRES = ("setuptools>=40.8.0", "wheel")
#: PEP 517: the backend of a project that names none
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"

#: pip's words for a requirement it could not satisfy from what it may see
PIP_NOT_FOUND = re.compile(
    r"(?:No matching distribution found for|"
    r"Could not find a version that satisfies the requirement) (?P<req>\S+)"
)


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


def build_pins(settings: Settings, name: str, variant: Variant) -> tuple[str, ...]:
    """Constraints on a build's build dependencies: the variant's and the package's override."""
    return tuple(variant.constraints) + settings.override(name).build_constraints


def first_isolated_pins(settings: Settings, name: str) -> tuple[str, ...] | None:
    """The pins of the first isolated variant this package's attempts will use (the order
    builds take: override, else past success), or None when no variant of it is isolated."""
    order = order_variants(
        settings.variant_order,
        variant_stats(settings.paths.history_db, name),
        settings.override(name).variants,
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
