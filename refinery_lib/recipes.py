"""Recipes: system packages and steps (argument lists) applied before a build.

On the local builder they touch the host, so they run only with --allow-system-recipes; a
container builder runs them inside its throwaway container instead.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import proc
from .errors import ConfigError

_PKG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:~-]*$")


@dataclass(frozen=True)
class Recipe:
    system_packages: tuple[str, ...] = ()
    steps: tuple[tuple[str, ...], ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    source: str = "override"  # override | hints

    def __post_init__(self) -> None:
        for pkg in self.system_packages:
            if not _PKG_RE.match(pkg):
                raise ConfigError(f"refusing system package name {pkg!r}")
        for step in self.steps:
            if not step or not all(isinstance(a, str) for a in step):
                raise ConfigError(f"a recipe step must be a non-empty argument list: {step!r}")

    @property
    def empty(self) -> bool:
        return not (self.system_packages or self.steps)

    @classmethod
    def from_override(cls, data: dict[str, Any], source: str = "override") -> Recipe:
        return cls(
            system_packages=tuple(data.get("system_packages", ())),
            steps=tuple(tuple(s) for s in data.get("recipe_steps", ())),
            env={k: str(v) for k, v in (data.get("env") or {}).items()},
            source=source,
        )

    def merged(self, other: Recipe) -> Recipe:
        return Recipe(
            tuple(dict.fromkeys(self.system_packages + other.system_packages)),
            tuple(dict.fromkeys(self.steps + other.steps)),
            {**self.env, **other.env},
            source=f"{self.source}+{other.source}" if not self.empty else other.source,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "system_packages": list(self.system_packages),
            "recipe_steps": [list(s) for s in self.steps],
            "source": self.source,
        }


@dataclass(frozen=True)
class RecipePolicy:
    enabled: bool = True  # False with --no-system-recipes
    allow_system: bool = False  # may touch the host (local builder)
    dry_run: bool = False
    auto_apply: bool = False  # --auto-apply-suggestions


def host_package_family() -> Literal["apt", "dnf"]:
    """`apt` or `dnf`, whichever installs packages on this host."""
    if shutil.which("apt-get"):
        return "apt"
    if shutil.which("dnf"):
        return "dnf"
    return "apt"


def install_command(family: str, packages: tuple[str, ...]) -> list[str]:
    if family == "dnf":
        return ["dnf", "install", "-y", *packages]
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def commands(recipe: Recipe, family: str) -> list[list[str]]:
    out = [install_command(family, recipe.system_packages)] if recipe.system_packages else []
    return out + [list(s) for s in recipe.steps]


def apply_on_host(
    recipe: Recipe, policy: RecipePolicy, log_path: Path, cwd: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Run a recipe for the local builder, or say in the log why it did not run."""
    cmds = commands(recipe, host_package_family())
    record: dict[str, Any] = {**recipe.to_json(), "commands": cmds, "applied": False}
    if recipe.empty:
        return record
    with open(log_path, "a", encoding="utf-8") as log:
        if not policy.enabled:
            record["skipped"] = "recipes disabled (--no-system-recipes)"
        elif policy.dry_run:
            record["skipped"] = "dry run (--dry-run-recipes)"
        elif not policy.allow_system:
            record["skipped"] = (
                "the local builder would run them on this host; pass --allow-system-recipes "
                "or use a container builder"
            )
        if "skipped" in record:
            for cmd in cmds:
                log.write(f"recipe not run ({record['skipped']}): {shlex.join(cmd)}\n")
            return record
    for cmd in cmds:
        proc.run(cmd, log_path=log_path, cwd=cwd, env=env)
    record["applied"] = True
    return record
