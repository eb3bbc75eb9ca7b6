"""Builder images in the engine's local storage: checked, bootstrapped, derived.

`ensure_image` checks that the image a build needs is there and for the right architecture,
and bootstraps the Debian builder image when it is missing (containers/debian/bootstrap.sh);
`image_with_packages` derives an image with a cross build's target libraries installed. One
process at a time makes an image (a lock file per image in the image cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import proc
from .config import workflow_dir
from .container_engine import engine_argv
from .container_presets import Preset, deb_arch, get_preset, oci_arch
from .container_run import (
    C_RESULT,
    C_WORK,
    HOST_CA_BUNDLE,
    prepare_work,
    run_env,
    script_command,
)
from .errors import BuildError, CommandError, ConfigError
from .failure_lines import first_error_line
from .files import lock_file

BOOTSTRAP_SCRIPT = workflow_dir() / "containers" / "debian" / "bootstrap.sh"
DEFAULT_IMAGE_CACHE = Path(os.environ.get("REFINERY_IMAGE_CACHE", "/var/cache/refinery-images"))


class ImageError(BuildError):
    """The builder image is missing, for another architecture, or could not be made."""


def image_arch(engine: str, image: str) -> str | None:
    """The OCI architecture of a local image, or None when the engine does not have it."""
    try:
        res = proc.run([engine, "image", "inspect", "--format", "{{.Architecture}}", image],
                       check=False, timeout=60)
    except CommandError as exc:
        raise ImageError(f"container engine {engine!r} cannot be run: {exc}") from exc
    if res.returncode != 0:
        return None
    return res.output.strip().splitlines()[-1] if res.output.strip() else ""


def image_id(engine: str, image: str) -> str:
    """The engine's id of `image` (sha256 hex)."""
    try:
        res = proc.run([engine, "image", "inspect", "--format", "{{.Id}}", image], timeout=120)
    except CommandError as exc:
        raise BuildError(f"cannot inspect the image {image}: {exc}") from exc
    return res.output.strip().splitlines()[-1].removeprefix("sha256:")


def bootstrap_argv(engine: str, arch: str, cache_dir: Path, tag: str | None = None,
                   *, force: bool = False) -> list[str]:
    """The command that bootstraps the Debian builder image (what `make build-debian` runs)."""
    argv = ["bash", os.fspath(BOOTSTRAP_SCRIPT), "--arch", deb_arch(arch),
            "--cache-dir", os.fspath(cache_dir), "--engine", engine]
    if tag:
        argv += ["--tag", tag]
    if force:
        argv.append("--force")
    return argv


def ensure_image(
    engine: str,
    preset: str | Preset | None,
    arch: str,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    image: str | None = None,
    log_path: Path | None = None,
    timeout: float | None = 3 * 3600,
) -> str:
    """The image reference to build with, made first when it is the missing debian image.

    Checks that the engine has the image and that it is for `arch`. A missing debian image is
    bootstrapped (about 6 minutes for s390x, the archive is cached in `cache_dir` and reused);
    `progress` receives its output line by line. Other missing images raise ImageError saying
    how to build them.
    """
    spec = get_preset(preset)
    if image:
        ref = image
    elif spec is not None:
        ref = spec.image_for(arch)
    else:
        raise ConfigError("a container build needs --container-preset or --container-image")
    want = oci_arch(arch)
    cache_dir = Path(cache_dir or DEFAULT_IMAGE_CACHE)
    with _image_lock(cache_dir, ref):
        have = image_arch(engine, ref)
        if have is None and spec is not None and spec.bootstrap and ref == spec.image_for(arch):
            bootstrap_image(engine, arch, cache_dir, tag=ref, progress=progress,
                            log_path=log_path, timeout=timeout)
            have = image_arch(engine, ref)
    if have is None:
        how = spec.build_command.format(arch=arch) if spec else "build or pull it first"
        raise ImageError(
            f"container image {ref} for {arch} is not in {engine}'s local storage: {how}"
            + (" (docs/containers.md)" if spec else "")
        )
    if have and have != want:
        raise ImageError(f"container image {ref} is for {have}, but the target needs {want}")
    return ref


def bootstrap_image(
    engine: str,
    arch: str,
    cache_dir: Path,
    *,
    tag: str | None = None,
    progress: Callable[[str], None] | None = None,
    log_path: Path | None = None,
    timeout: float | None = 3 * 3600,
    force: bool = False,
) -> None:
    """Run containers/debian/bootstrap.sh, streaming its output to `progress`."""
    if not BOOTSTRAP_SCRIPT.exists():
        raise ImageError(f"{BOOTSTRAP_SCRIPT} is missing: run from a source checkout")
    cache_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or cache_dir / f"bootstrap-debian-{deb_arch(arch)}.log"
    argv = bootstrap_argv(engine, arch, cache_dir, tag, force=force)
    if progress:
        progress(f"building the debian {arch} builder image (cached in {cache_dir}); "
                 f"log: {log_path}")
    with _follow(log_path, progress):
        try:
            proc.run(argv, log_path=log_path, timeout=timeout)
        except CommandError as exc:
            raise ImageError(f"bootstrapping the debian {arch} image failed: {exc}",
                             log_path) from exc


def image_with_packages(
    engine: str,
    image: str,
    arch: str,
    packages: Sequence[str],
    family: str,
    log_path: Path,
    work_dir: Path,
    timeout: float | None = 3600,
) -> str:
    """`image` with the target-arch system `packages` installed (the cross builder's target
    libraries, e.g. libjpeg-dev for pillow): made once per image and package set by running
    container_build.py's install stage in a container of `arch` (qemu-user on a foreign host)
    and committing it; the same validated package names as a container recipe."""
    if not packages:
        return image
    # keyed by the base image's id too: a base built again makes a new derived image
    key = hashlib.sha256(json.dumps([image, image_id(engine, image), family,
                                     sorted(packages)]).encode()).hexdigest()
    base, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    ref = f"{base}:{tag or 'latest'}-lib{key[:12]}"
    cache_dir = work_dir.parent
    with _image_lock(cache_dir, ref):
        if image_arch(engine, ref) is not None:
            return ref
        work_dir = work_dir.resolve()
        shutil.rmtree(work_dir, ignore_errors=True)
        request = {"install_only": True, "system_packages": list(packages), "family": family,
                   "work": C_WORK, "result": C_RESULT}
        result_file = prepare_work(work_dir, request, make=("tmp", "home"))
        env = run_env({}, [], work_dir, HOST_CA_BUNDLE)
        name = f"refinery-libs-{uuid.uuid4().hex[:12]}"
        argv = engine_argv(engine, image, script_command("python3"), arch=arch,
                           mounts=env.mounts, env=env.fixed, name=name, workdir=C_WORK,
                           timeout=timeout)
        argv.remove("--rm")  # committed below, then removed
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"# target libraries for the cross build: {' '.join(packages)} into "
                     f"{image} -> {ref}\n")
        try:
            res = proc.run(argv, log_path=log_path, timeout=timeout, check=False)
            data = json.loads(result_file.read_text()) if result_file.is_file() else {}
            if res.returncode != 0 or not data.get("ok"):
                raise BuildError(
                    f"installing {' '.join(packages)} into the target image failed: "
                    f"{data.get('detail') or first_error_line(log_path)}", log_path)
            proc.run([engine, "commit", name, ref], log_path=log_path, timeout=600)
        except CommandError as exc:
            raise BuildError(f"cannot make the target image {ref}: {exc}", log_path) from exc
        finally:
            proc.run([engine, "rm", "--force", name], check=False, timeout=300)
    return ref


@contextlib.contextmanager
def _image_lock(cache_dir: Path, ref: str) -> Iterator[None]:
    """One process makes an image at a time, across parallel build jobs."""
    lock: contextlib.AbstractContextManager[Any]
    try:
        lock = lock_file(cache_dir / (re.sub(r"[^\w.-]", "_", ref) + ".lock")) \
            or contextlib.nullcontext()
    except OSError:
        lock = contextlib.nullcontext()  # an unwritable cache still allows using an existing image
    with lock:
        yield


@contextlib.contextmanager
def _follow(path: Path, progress: Callable[[str], None] | None) -> Iterator[None]:
    """Call `progress` with each new line appended to `path` while the block runs."""
    if progress is None:
        yield
        return
    stop = threading.Event()
    start = path.stat().st_size if path.exists() else 0

    def tail() -> None:
        pos, buf = start, ""
        while True:
            done = stop.is_set()
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
            except FileNotFoundError:
                chunk = ""
            *lines, buf = (buf + chunk).split("\n")
            for line in lines:
                progress(line)
            if done:
                if buf:
                    progress(buf)
                return
            stop.wait(0.25)

    thread = threading.Thread(target=tail, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
