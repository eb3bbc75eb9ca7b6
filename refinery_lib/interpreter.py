"""The host interpreter that runs builds (local builds, and a cross build's build side)."""

from __future__ import annotations

import shutil
import sys

from .errors import BuildError
from .settings import Settings
from .targets import host_arch


def interpreter_for(python: str) -> str:
    """The builder's interpreter for the target Python version."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == python:
        return sys.executable
    found = shutil.which(f"python{python}")
    if not found:
        raise BuildError(
            f"the local and cross builders need python{python} on PATH (running "
            f"{sys.version.split()[0]}); install it or use a container builder"
        )
    return found


def check_local_target(settings: Settings) -> None:
    arch = settings.target.arch
    if arch != host_arch():
        raise BuildError(
            f"the local builder compiles for this host ({host_arch()}) only, but the target "
            f"{settings.target.platform_tag} is {arch}: use --builder cross (or auto), a "
            "container builder (--container-preset debian) or --platform-tag native"
        )
