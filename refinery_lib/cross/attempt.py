"""One cross attempt on this host: the build environment, the cross settings, the build.

The build environment is a venv of this host's interpreter (the warm-up's shared one when it
covers the sdist, else one made for the attempt, offline from the warm folder when it can):
build requirements run here, as crossenv's "build-python" packages do. The backend's hooks run
in it through build's API (pep517/build_in_env.py) with the target's sysconfig data on their
PYTHONPATH, zig as the compilers and each backend's cross settings (backends.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import proc
from ..attempt_env import shared_unmet
from ..build_requirements import BuildRequires
from ..errors import BuildError
from ..pep517 import build_in_env
from ..recipes import Recipe
from ..settings import Settings
from ..targets import Target
from .backends import CrossBuild, cross_build
from .libraries import BuiltLibrary, build_libraries
from .sysroot import TargetPython, target_python
from .toolchain import Toolchain, toolchain


@dataclass(frozen=True)
class CrossTools:
    """The target's toolchain and Python, ready for attempts."""

    toolchain: Toolchain
    python: TargetPython

    def provenance(self) -> dict[str, str]:
        glibc = self.toolchain.target.rsplit(".", 2)
        return {
            "zig": self.toolchain.version,
            "zig_target": self.toolchain.target,
            "target_glibc": ".".join(glibc[1:]) if len(glibc) == 3 else "",
            "target_python_image": self.python.image,
            "target_python_image_id": self.python.image_id[:16],
        }


@lru_cache(maxsize=4)
def cross_tools(target: Target, engine: str, image: str, root: Path) -> CrossTools:
    """The toolchain wrappers and the target Python (exported from `image` once)."""
    tp = target_python(engine, image, target.arch, target.python, root)
    tc = toolchain(target, root, tp.libview, tp.root, tp.image_id[:16])
    return CrossTools(tc, tp)


def make_venv(python: str, venv: Path, requires: list[str], env: Mapping[str, str],
              log_path: Path) -> Path:
    """A venv of `python` with `requires` installed (as build's isolated environments are
    made: no pip in it, the interpreter's pip with --python); returns its interpreter."""
    shutil.rmtree(venv, ignore_errors=True)
    proc.run([python, "-m", "venv", "--without-pip", "--symlinks", venv], log_path=log_path)
    venv_python = venv / "bin" / "python"
    install(python, venv_python, requires, env, log_path)
    return venv_python


def install(python: str, venv_python: Path, requires: list[str], env: Mapping[str, str],
            log_path: Path) -> None:
    if not requires:
        return
    proc.run(
        [python, "-m", "pip", "--python", venv_python, "install", "--no-warn-script-location",
         "--no-input", "--progress-bar", "off", *requires],
        log_path=log_path, env=env, timeout=1800,
    )


def run_cross_build(
    tools: CrossTools,
    reqs: BuildRequires,
    src: Path,
    work: Path,
    env: dict[str, str],
    log_path: Path,
    *,
    python: str,
    env_python: Path | None,
    isolation: bool,
    timeout: float | None,
    pid_file: Path,
    config_settings: tuple[str, ...] = (),
    libraries: tuple[Path, ...] = (),
) -> tuple[proc.Result, CrossBuild]:
    """Build `src` for the target into work/dist. `env_python` is a ready environment's
    interpreter (the warm-up's shared one); else an isolated attempt makes its own venv with
    the sdist's build requirements, and a no-isolation attempt uses `python`'s own packages.
    Requirements the backend names at build time are installed into an attempt's own venv and
    the build runs once more; a shared environment lacking them exits UNMET_EXIT (the caller
    then tries without it)."""
    # compiled-in paths (the source, and meson's or CMake's build folder in the attempt's
    # folder) name the project, not this cache, so another cache builds the same bytes
    prefix_maps = (f"-ffile-prefix-map={src}=/usr/src/{src.name}",
                   f"-ffile-prefix-map={work}=/usr/src/build")
    cb = cross_build(tools.toolchain, tools.python, work / "cross", reqs.backend, libraries,
                     prefix_maps)
    # pip installs build requirements for this host: none of the cross variables reach it
    pip_env = dict(env)
    env = {**env, **cb.env}
    own = env_python is None and isolation
    if own:
        if reqs.problem:
            raise BuildError(reqs.problem, log_path)
        env_python = make_venv(python, work / "venv", list(reqs.requires), pip_env, log_path)
    elif env_python is None:
        env_python = Path(python)  # no isolation: the build interpreter's own packages
    argv = [python, build_in_env.__file__, "--python", str(env_python),
            "--pythonpath", cb.pythonpath]
    for setting in (*cb.config_settings, *config_settings):
        argv += ["--config-setting", setting]
    argv += ["--outdir", str(work / "dist"), str(src)]
    res = _build(argv, env, work, log_path, timeout, pid_file)
    if own and res.returncode == build_in_env.UNMET_EXIT:
        lacking = shared_unmet(log_path)
        if lacking:
            install(python, env_python, lacking, pip_env, log_path)
            res = _build(argv, env, work, log_path, timeout, pid_file)
    return res, cb


def _build(argv: list[str], env: dict[str, str], work: Path, log_path: Path,
           timeout: float | None, pid_file: Path) -> proc.Result:
    return proc.run(argv, log_path=log_path, env=env, cwd=work, timeout=timeout, check=False,
                    pid_file=pid_file)


def tools_for(settings: Settings, packages: tuple[str, ...] = (),
              log_path: Path | None = None) -> CrossTools:
    """zig for the target and the target's Python, from the target image (with a recipe's
    target libraries installed into a derived image first)."""
    from ..container_images import DEFAULT_IMAGE_CACHE, ensure_image, image_with_packages
    from ..container_presets import get_preset

    c = settings.container
    assert c is not None
    arch = settings.target.arch
    image = ensure_image(c.engine, c.preset or None, arch,
                         Path(c.image_cache) if c.image_cache else DEFAULT_IMAGE_CACHE,
                         image=c.image or None)
    if packages:
        preset = get_preset(c.preset or None)
        image = image_with_packages(
            c.engine, image, arch, packages, preset.family if preset else "apt",
            log_path or settings.paths.logs / "target-libraries.log",
            settings.paths.cache / "cross" / "images" / "work",
        )
    return cross_tools(settings.target, c.engine, image, settings.paths.cache / "cross")


def target_libraries_for(tools: CrossTools, override: dict[str, Any], settings: Settings,
                         log_path: Path) -> list[BuiltLibrary]:
    """The package's target libraries (overrides.NAME.target_libraries), built from source
    for the toolchain's target once (cross/libraries.py)."""
    names = list(override.get("target_libraries") or ())
    if not names:
        return []
    return build_libraries(names, tools.toolchain, tools.python,
                           settings.paths.cache / "cross" / "libs", log_path)


def cross_recipe(recipe: Recipe, settings: Settings, log_path: Path
                 ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A recipe of a cross attempt: its system packages are the target's libraries, installed
    into the target image (contained: no host permission needed, as in a container build);
    its steps would run on this host, which a cross build does not do."""
    policy = settings.recipes
    record: dict[str, Any] = {**recipe.to_json(), "where": "target image", "applied": False}
    skipped = ("recipes disabled (--no-system-recipes)" if not policy.enabled
               else "dry run (--dry-run-recipes)" if policy.dry_run else "")
    if recipe.steps:
        record["steps_skipped"] = "a cross build runs no recipe steps on this host"
    if skipped or not recipe.system_packages:
        record["skipped"] = skipped or record["steps_skipped"]
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"recipe not run ({record['skipped']}): {recipe.to_json()}\n")
        return record, ()
    record["applied"] = True
    return record, tuple(recipe.system_packages)
