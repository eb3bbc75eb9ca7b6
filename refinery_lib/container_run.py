"""One run of `container_build.py` in a container, seen from the host.

Where things appear inside the container (the work folder, the script with `platform_tags.py`
beside it, the sdist, pip's locations, the CA bundle); which of the build's variables the
container gets and the read-only mounts they need; and the run itself: the request written
into the per-run work folder (the only host folder the container can write), the engine
started, the JSON result read back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import proc
from .container_engine import Mount, engine_env
from .errors import BuildError, CommandError
from .failure_lines import first_error_line

log = logging.getLogger(__name__)

BUILD_SCRIPT = Path(__file__).resolve().parent / "container_build.py"
#: the one stdlib module container_build.py imports from the refinery (mounted beside it)
TAGS_SCRIPT = BUILD_SCRIPT.with_name("platform_tags.py")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# Where things appear inside the container.
C_WORK = "/work"
C_SCRIPT = "/refinery/container_build.py"
C_TAGS = "/refinery/platform_tags.py"
C_SRC = "/refinery/src"
C_LINKS = "/refinery/links"
C_CA = "/refinery/ca-bundle.crt"
C_REQUEST = f"{C_WORK}/request.json"
C_RESULT = f"{C_WORK}/result.json"

# Variables never forwarded into a container: they describe the host, or (passed by name
# through the engine's own environment) they would change how the engine itself runs.
_HOST_ONLY = re.compile(
    r"^(PATH|HOME|PWD|OLDPWD|SHLVL|HOSTNAME|USER|LOGNAME|SHELL|TMPDIR|TERM|MAIL|DISPLAY|_"
    r"|VIRTUAL_ENV|PYTHONHOME|PYTHONPATH|PYTHONSTARTUP|PIP_CONFIG_FILE|PIP_CERT|LD_\w+"
    r"|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|GODEBUG|GOMAXPROCS|NOTIFY_SOCKET"
    r"|(SSH|XDG|PYENV|CONDA|SNAKEMAKE|DBUS|LC|CONTAINERS|CONTAINER|DOCKER|REGISTRY|BUILDAH"
    r"|STORAGE|PODMAN)_\w*)$"
)
# pip variables whose entries may be host folders or file:// URLs (mounted read-only).
_PIP_LOCATIONS = ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT")


def container_env(
    env: Mapping[str, str] | None, find_links: Sequence[Path] = ()
) -> tuple[dict[str, str], list[Mount]]:
    """The build's variables as the container must see them, and the read-only mounts needed.

    Host folders and file:// URLs in PIP_FIND_LINKS / PIP_INDEX_URL / PIP_EXTRA_INDEX_URL /
    PIP_CONSTRAINT (and `find_links`) are mounted read-only under /refinery/links and
    rewritten; host-only variables (PATH, HOME, ...) are dropped.
    """
    out: dict[str, str] = {}
    mounts: list[Mount] = []
    seen: dict[str, str] = {}

    def mount(path: Path) -> str | None:
        path = path.resolve()
        if not path.exists():
            log.warning("not mounting missing pip location %s", path)
            return None
        key = os.fspath(path)
        if key not in seen:
            seen[key] = f"{C_LINKS}/{len(seen)}"
            mounts.append(Mount(path, seen[key]))
        return seen[key]

    for key, value in (env or {}).items():
        if _HOST_ONLY.match(key):
            continue
        value = str(value)
        if key in _PIP_LOCATIONS:
            entries = []
            for entry in value.split():
                if entry.startswith("file://") and key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
                    # an index's pages link to files beside it (../../files/x.whl): mount the
                    # folder holding the index, so those relative links resolve inside too
                    index = Path(entry[len("file://"):]).resolve()
                    inside = mount(index.parent)
                    entry = f"file://{inside}/{index.name}" if inside else ""
                elif entry.startswith("file://"):
                    inside = mount(Path(entry[len("file://"):]))
                    entry = f"file://{inside}" if inside else ""
                elif entry.startswith("/"):
                    entry = mount(Path(entry)) or ""
                if entry:
                    entries.append(entry)
            if key == "PIP_FIND_LINKS":
                entries += [m for m in (mount(Path(p)) for p in find_links) if m]
            if not entries:
                continue
            value = " ".join(entries)
        out[key] = value
    if find_links and "PIP_FIND_LINKS" not in out:
        links = [m for m in (mount(Path(p)) for p in find_links) if m]
        if links:
            out["PIP_FIND_LINKS"] = " ".join(links)
    return out, mounts


@dataclass(frozen=True)
class RunEnv:
    """The variables and mounts of one run of the script."""

    passed: dict[str, str]  # the build's own variables: passed by name, values via engine_env
    fixed: dict[str, str]  # the refinery's, set inline on the command line
    mounts: tuple[Mount, ...]  # the work folder (the only writable one), the scripts, ...


def run_env(
    env: Mapping[str, str] | None, find_links: Sequence[Path], work_dir: Path,
    ca_bundle: Path | None, extra: Sequence[Mount] = (),
) -> RunEnv:
    """The build's own variables, the work folder, the script, the CA bundle and `extra`
    (mounted last) of one run."""
    passed, link_mounts = container_env(env, find_links)
    fixed = {
        "HOME": f"{C_WORK}/home",
        "TMPDIR": f"{C_WORK}/tmp",
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    mounts = [
        Mount(work_dir, C_WORK, read_only=False),
        Mount(BUILD_SCRIPT, C_SCRIPT),
        Mount(TAGS_SCRIPT, C_TAGS),
        *link_mounts,
    ]
    if ca_bundle is not None and Path(ca_bundle).is_file():
        mounts.append(Mount(Path(ca_bundle).resolve(), C_CA))
        for key in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            fixed[key] = C_CA
    return RunEnv(passed, fixed, (*mounts, *extra))


def script_command(python: str) -> list[str]:
    """The command of a run: the image's `python` on the mounted script and the request."""
    return [python, C_SCRIPT, C_REQUEST]


def prepare_work(work_dir: Path, request: Mapping[str, Any], *, clear: Sequence[str] = (),
                 make: Sequence[str] = ()) -> Path:
    """Empty the `clear` subfolders of `work_dir`, make the `make` ones, write the request and
    drop the last result; returns where the result will be."""
    for sub in clear:
        shutil.rmtree(work_dir / sub, ignore_errors=True)
    for sub in make:
        (work_dir / sub).mkdir(parents=True)
    result_file = work_dir / "result.json"
    result_file.unlink(missing_ok=True)
    (work_dir / "request.json").write_text(json.dumps(request, indent=2))
    return result_file


def run_script(argv: Sequence[str], *, engine: str, name: str, what: str, env: RunEnv,
               log_path: Path, timeout: float | None, result_file: Path) -> dict[str, Any]:
    """Run an `engine_argv` of the script (container `name`) with its output appended to
    `log_path`, and return the result it wrote. BuildError, naming `what` ran, when the engine
    cannot start, on a timeout (the container is removed) or when no result was written."""
    try:
        res = proc.run(argv, log_path=log_path, env=engine_env(env.passed), timeout=timeout,
                       check=False)
    except CommandError as exc:  # the engine itself could not start
        raise BuildError(f"container engine {engine!r} cannot be run: {exc}", log_path) from exc
    if res.timed_out:
        proc.run([engine, "rm", "--force", name], check=False, timeout=120)
        raise BuildError(f"{what} timed out after {timeout:g} s", log_path)
    if not result_file.is_file():
        raise BuildError(f"{what} exited {res.returncode} without a result: "
                         f"{first_error_line(log_path)}", log_path)
    data: dict[str, Any] = json.loads(result_file.read_text())
    return data
