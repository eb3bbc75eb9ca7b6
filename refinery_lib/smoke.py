"""Import smoke test: a wheel's top-level modules import on the target before it counts."""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import parse_wheel_filename

from . import archives, container_build, proc
from .errors import ArchiveError, CommandError
from .failure_lines import last_lines
from .safe_env import build_base_env
from .settings import Settings
from .targets import host_arch
from .wheels import read_wheel_metadata


def top_level_modules(wheel: Path) -> list[str]:
    """Importable top-level names, chosen as every builder chooses them (container_build.py:
    top_level.txt, else the archive's layout; C extension modules such as `_cffi_backend`
    included)."""
    return container_build.top_level_modules(str(wheel))


def smoke_import(
    settings: Settings, wheel: Path, find_links: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """Install `wheel` (with its deps from the output folder) into a scratch folder and import
    its modules with the builder's interpreter. Only on the target's own architecture."""
    result: dict[str, Any] = {"wheel": wheel.name, "modules": top_level_modules(wheel)}
    if settings.target.arch != host_arch():
        result.update(
            ok=None,
            detail=f"not run: the target is {settings.target.arch}, this host "
            f"is {host_arch()} (container builders smoke-test on the target)",
        )
        return result
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if py != settings.target.python:
        result.update(ok=None, detail=f"not run: no Python {settings.target.python} here")
        return result
    env = build_base_env(settings.pass_env)  # the import runs the wheel's code: no secrets
    env["PIP_CONFIG_FILE"] = os.devnull
    with tempfile.TemporaryDirectory(prefix="refinery-smoke-") as tmp:
        try:
            if not _needs_pip(wheel, settings):
                # nothing to resolve, nothing to place: unpacking is what pip would do, without
                # pip's 0.8 s start
                with archives.open_zip(wheel) as zf:
                    archives.check_wheel_entries(zf)  # a build's wheel is a stranger's too
                    zf.extractall(tmp)
            else:
                proc.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--no-index",
                        *(a for p in (wheel.parent, *find_links) for a in ("--find-links", str(p))),
                        "--target",
                        tmp,
                        str(wheel),
                    ],
                    env=env,
                )
            name = parse_wheel_filename(wheel.name)[0]
            # -I: neither the user's site-packages nor the environment leak into the import
            code = (
                f"import importlib, platform, sys\nsys.path.insert(0, {tmp!r})\n"
                + "".join(f"importlib.import_module({m!r})\n" for m in result["modules"])
                + "print(platform.machine())"
            )
            out = proc.run([sys.executable, "-I", "-c", code], env=env, cwd=Path(tmp))
            result.update(ok=True, arch=out.output.strip(), package=str(name))
        except CommandError as exc:
            result.update(ok=False, detail=last_lines(exc.output, 3, 500))
        except ArchiveError as exc:
            result.update(ok=False, detail=f"the built wheel is unsafe to unpack: {exc}")
    return result


def _needs_pip(wheel: Path, settings: Settings) -> bool:
    """Whether installing `wheel` is more than unpacking it: a requirement that applies on the
    target (to resolve from the output folder) or a .data folder (scripts, headers to place)."""
    env = dict(settings.target.marker_environment(), extra="")
    for line in read_wheel_metadata(wheel).get("requires-dist", []):
        try:
            req = Requirement(line)
        except InvalidRequirement:
            return True  # pip names the problem
        if req.marker is None or req.marker.evaluate(env):
            return True
    with zipfile.ZipFile(wheel) as zf:
        return any(n.split("/", 1)[0].endswith(".data") for n in zf.namelist())
