"""Build a wheel with a build environment that is ready already: `build`'s API, no new env.

The warm-up (refinery_lib/warmup.py, refinery_lib/shared_venvs.py) makes one environment per
distinct set of build requirements; builds of the local builder that share it run this
program in the builder's interpreter:

    python .../refinery_lib/pep517/build_in_env.py --python ENV/bin/python --outdir DIST SRC

It is run by file path, so its folder (this file and an empty package marker) is first on
`sys.path`: nothing there shadows `build` (refinery_lib/build.py would), and it imports
nothing of refinery_lib (the refinery on this interpreter's path may be another checkout).

It does what `python -m build --wheel` does after making its isolated environment, in the same
order and with the same hook environment (`PATH` led by the environment's scripts,
`PYTHONPATH` empty), so the same source gives the same wheel: ask the backend for its
build-time requirements (`get_requires_for_build_wheel`), report the installed versions in
build's words ("Installed build dependency versions"), build. `ProjectBuilder.check_dependencies`
would look at this process's packages, not the environment's, so the requirements are checked
against the environment's site-packages here. When one is unmet it exits `UNMET_EXIT` after
one line starting with `LACKS`, having built nothing: the caller then builds another way.
Nothing is written into the environment: bytecode was compiled when it was made, and the
backend runs with PYTHONDONTWRITEBYTECODE.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path

UNMET_EXIT = 3
LACKS = "refinery: the shared build environment lacks: "


def site_packages(env: Path) -> list[str]:
    """The environment's site-packages folders (purelib and platlib may be two)."""
    found: dict[str, str] = {}
    candidates = [*env.glob("lib/python*/site-packages"), *env.glob("lib64/python*/site-packages")]
    for p in sorted(candidates):
        if p.is_dir():  # lib64 is often a link to lib: each folder once
            found.setdefault(os.path.realpath(p), str(p))
    return list(found.values())


def distributions(paths: list[str]) -> dict[str, importlib.metadata.Distribution]:
    from packaging.utils import canonicalize_name

    dists: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if name:
            dists.setdefault(canonicalize_name(name), dist)
    return dists


def unmet(requirements: Iterable[str], paths: list[str]) -> list[str]:
    """Requirements (and their dependencies, with extras) the environment at `paths` does not
    satisfy, as build's `check_dependency` decides it for its own process."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists = distributions(paths)

    def check(text: str, extras: frozenset[str], seen: set[str]) -> Iterator[str]:
        req = Requirement(text)
        key = f"{req}|{sorted(extras)}"
        if key in seen:
            return
        seen.add(key)
        if req.marker and not any(
            req.marker.evaluate({"extra": e}) for e in frozenset({""}) | extras
        ):
            return
        dist = dists.get(canonicalize_name(req.name))
        if dist is None or (
            req.specifier and not req.specifier.contains(dist.version, prereleases=True)
        ):
            yield str(req)
            return
        for dep in dist.requires or ():
            yield from check(dep, frozenset(req.extras), seen)

    seen: set[str] = set()
    return list(dict.fromkeys(u for r in sorted(requirements) for u in check(r, frozenset(), seen)))


def installed_versions(requirements: Iterable[str], paths: list[str]) -> dict[str, str]:
    """The installed version of each requirement's distribution, by canonical name (what
    build reports for an isolated environment)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists = distributions(paths)
    wanted = {canonicalize_name(Requirement(r).name) for r in requirements}
    return {name: dists[name].version for name in sorted(wanted) if name in dists}


def hook_environ(env: Path, pythonpath: str = "") -> dict[str, str]:
    """What build's isolated environment adds for the backend, and no bytecode writes.
    `pythonpath` is empty, as in build's environments, but for a cross build: the folder of the
    target's sysconfig data."""
    scripts = str(env / "bin")
    path = os.environ.get("PATH")
    return {
        "PATH": os.pathsep.join([scripts, path]) if path is not None else scripts,
        "PYTHONPATH": pythonpath,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def config_settings(pairs: list[str]) -> dict[str, str | list[str]]:
    """`KEY=VALUE` pairs as build's `-C` makes them (a repeated key becomes a list)."""
    out: dict[str, str | list[str]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key in out:
            old = out[key]
            out[key] = [*old, value] if isinstance(old, list) else [old, value]
        else:
            out[key] = value
    return out


def _step(message: str) -> None:
    print(f"* {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the environment's interpreter")
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--pythonpath", default="", help="the hooks' PYTHONPATH (cross builds)")
    parser.add_argument("--config-setting", "-C", action="append", default=[],
                        help="KEY=VALUE for the backend, as build's -C")
    parser.add_argument("srcdir")
    args = parser.parse_args(argv)

    import build
    import pyproject_hooks

    python = Path(args.python)
    env = python.parent.parent
    paths = site_packages(env)
    extra = hook_environ(env, args.pythonpath)
    settings = config_settings(args.config_setting)

    def runner(cmd, cwd=None, extra_environ=None):
        pyproject_hooks.default_subprocess_runner(cmd, cwd, {**extra, **(extra_environ or {})})

    _step(f"Using the shared build environment {env}")
    try:
        builder = build.ProjectBuilder(args.srcdir, python_executable=str(python), runner=runner)
        _step("Getting build dependencies for wheel...")
        requires = builder.build_system_requires | builder.get_requires_for_build("wheel", settings)
        lacking = unmet(requires, paths)
        if lacking:
            print(LACKS + ", ".join(lacking), flush=True)
            return UNMET_EXIT
        versions = installed_versions(requires, paths)
        if versions:
            _step("Installed build dependency versions:")
            for name, version in versions.items():
                print(f"  - {name}=={version}")
        _step("Building wheel...")
        sys.stdout.flush()
        wheel = builder.build("wheel", args.outdir, settings)
    except build.BuildBackendException as exc:
        print(f"\nERROR {exc}", flush=True)
        inner = exc.exception
        if not hasattr(inner, "returncode"):  # a backend exception: its traceback says why
            trace = traceback.format_exception(type(inner), inner, inner.__traceback__, limit=-1)
            print("".join(trace), flush=True)
        return 1
    except build.BuildException as exc:
        print(f"ERROR {exc}", flush=True)
        return 1
    print(f"Successfully built {Path(wheel).name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
