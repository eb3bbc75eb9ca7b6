"""Shared build environments: one venv per set of build requirements, made once, read-only.

For the local builder the warm-up (warmup.py) makes each build environment that two or more
builds need once (`make_shared_env`): one venv per set of requirements, pins, interpreter and
warm wheels (`env_digest`), under `CACHE/buildenv/venvs/`, installed offline from the warm folder,
read-only once made. Its marker file, written last, says it is ready and what it holds
(`ready_env`). Builds whose sdist it covers use it as it is (attempt_env.py,
refinery_lib/pep517/build_in_env.py) instead of making their own. Environments no warm-up has
used for a week are removed (`prune_envs`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import proc
from .build_requirements import union
from .pep517.build_in_env import distributions, site_packages

log = logging.getLogger(__name__)

#: the file that says an environment is ready (written last), with what it holds
VENV_MARKER = ".refinery-ready.json"

#: an environment no warm-up has used for this long is removed (new downloads, other pins or
#: another interpreter give new keys, so old environments would otherwise pile up)
PRUNE_AFTER = 7 * 24 * 3600


@dataclass(frozen=True)
class SharedEnv:
    """A build environment the warm-up made (or found made) for every build that needs it."""

    digest: str
    path: Path
    packages: dict[str, str]
    created: bool
    duration: float = 0.0

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def interpreter_id(python: str) -> str:
    """A builder interpreter's path and full version: part of its environments' key."""
    if python == sys.executable:
        version = sys.version
    else:
        version = proc.run([python, "-c", "import sys; print(sys.version)"]).output.strip()
    return f"{python} {' '.join(version.split())}"


def env_digest(
    requires: Iterable[str], pins: Iterable[str], interpreter: str, wheels: Iterable[str]
) -> str:
    """What makes two build environments the same: the static build requirements, the pins,
    the interpreter, and the wheels they are installed from (a newer setuptools downloaded
    later makes a new environment instead of keeping the old one forever)."""
    blob = json.dumps(
        {
            "requires": union(requires),
            "pins": sorted(pins),
            "interpreter": interpreter,
            "wheels": sorted(wheels),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def ready_env(path: Path, key: str) -> dict[str, Any] | None:
    """The marker of a finished environment at `path` made for `key`, else None (missing,
    half made by a run that crashed, another key, or its base interpreter gone)."""
    try:
        marker = json.loads((path / VENV_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("key") != key:
        return None
    if not (path / "bin" / "python").exists():
        return None
    return marker


def installed_packages(env: Path) -> dict[str, str]:
    """Every distribution installed in an environment, by canonical name."""
    return {n: d.version for n, d in sorted(distributions(site_packages(env)).items())}


def remove_tree(path: Path) -> None:
    """Remove a folder, read-only ones included (a shared environment is made read-only)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, _ in os.walk(path):
            for d in (folder, *(os.path.join(folder, x) for x in dirs)):
                if not os.path.islink(d):
                    os.chmod(d, os.stat(d).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        shutil.rmtree(path)
    else:
        path.unlink()


def _read_only(folder: Path) -> None:
    """No write bits under `folder`: a user (not root) cannot change a shared environment
    while builds use it, and Python writes no bytecode into it."""
    for parent, dirs, files in os.walk(folder, topdown=False):
        for name in (*files, *dirs):
            p = os.path.join(parent, name)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IMODE(os.stat(p).st_mode) & ~0o222)
    os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) & ~0o222)


def _relocate(made: Path, final: Path) -> None:
    """Scripts and pyvenv.cfg name the folder the environment was made in: name its place."""
    old, new = str(made).encode(), str(final).encode()
    bin_dir = made / "bin"
    for p in [made / "pyvenv.cfg", *(sorted(bin_dir.iterdir()) if bin_dir.is_dir() else [])]:
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            if old in data:
                p.write_bytes(data.replace(old, new))


def make_shared_env(
    key: str,
    requires: Sequence[str],
    pins: Sequence[str],
    python: str,
    root: Path,
    wheels: Path,
    env: Mapping[str, str],
    log_path: Path,
    scratch: Path,
) -> SharedEnv:
    """The environment for `key` under `root`: found ready, or made now.

    Made as `python -m build` makes an isolated one (a venv without pip, the requirements
    installed by the interpreter's pip with `--python`), but offline from the `wheels` folder,
    in a temporary sibling renamed into place; bytecode is compiled at install, the files are
    made read-only and the marker, with the installed versions, is written last. A folder
    without the marker (a crash) is not ready: it is removed and made again. Raises
    CommandError or OSError when it cannot be made."""
    started = time.monotonic()
    final = root / key[:16]
    marker = ready_env(final, key)
    if marker is not None:
        os.utime(final / VENV_MARKER)  # in use: see prune_envs
        return SharedEnv(key, final, dict(marker.get("packages", {})), created=False)
    root.mkdir(parents=True, exist_ok=True)
    remove_tree(final)
    made = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    pip_env = dict(env)
    pip_env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_ONLY_BINARY=":all:")
    pip_env.pop("PIP_CONSTRAINT", None)
    reqs = scratch / f"env-{final.name}-requirements.txt"
    reqs.write_text("\n".join(requires) + "\n")
    if pins:
        cons = scratch / f"env-{final.name}-constraints.txt"
        cons.write_text("\n".join(pins) + "\n")
        pip_env["PIP_CONSTRAINT"] = str(cons)
    try:
        proc.run([python, "-m", "venv", "--without-pip", "--symlinks", made], log_path=log_path)
        proc.run(
            [
                python, "-m", "pip", "--python", made / "bin" / "python", "install",
                "--ignore-installed", "--use-pep517", "--no-warn-script-location",
                "--no-input", "--progress-bar", "off", "-r", reqs,
            ],
            log_path=log_path,
            env=pip_env,
        )
        _relocate(made, final)
        os.rename(made, final)
    except BaseException:
        remove_tree(made)
        raise
    packages = installed_packages(final)
    for sub in ("bin", "lib", "lib64", "include"):
        if (final / sub).is_dir() and not (final / sub).is_symlink():
            _read_only(final / sub)
    duration = round(time.monotonic() - started, 3)
    ready = final / f"{VENV_MARKER}.tmp"
    ready.write_text(
        json.dumps(
            {
                "key": key,
                "requires": list(requires),
                "pins": list(pins),
                "python": python,
                "packages": packages,
                "duration": duration,
            },
            indent=1,
            sort_keys=True,
        )
    )
    os.replace(ready, final / VENV_MARKER)
    return SharedEnv(key, final, packages, created=True, duration=duration)


def prune_envs(root: Path, keep: set[str], now: float | None = None) -> list[str]:
    """Remove the environments under `root` not in `keep` whose marker was last used more
    than PRUNE_AFTER ago, and half-made ones (no marker) as old; returns their names. Runs
    under the warm-up's lock; a run still building with an older environment used it within
    the week."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted(root.iterdir()):
        if path.name in keep or not path.is_dir() or path.name.startswith("."):
            continue
        marker = path / VENV_MARKER
        try:
            last = (marker if marker.exists() else path).stat().st_mtime
        except OSError:
            continue
        if now - last > PRUNE_AFTER:
            remove_tree(path)
            removed.append(path.name)
    if removed:
        log.info("removed %d build environment(s) unused for a week: %s", len(removed),
                 ", ".join(removed))
    return removed
