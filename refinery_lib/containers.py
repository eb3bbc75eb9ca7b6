"""Container builders: presets, image preparation, the engine command line, one build attempt.

The host side of a container build. Each attempt runs in a fresh container (`--rm`) from a
preset's image (or `--container-image`); `container_build.py`, mounted read-only with
`platform_tags.py` (the one module it shares with the host), does the work inside it with the
container's own Python and writes a JSON result into the per-build work dir, which is the
only host folder the container can write. Foreign architectures (s390x on
an x86_64 host) run under qemu-user through binfmt_misc.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import proc, safe_env
from .config import workflow_dir
from .errors import BuildError, CommandError, ConfigError
from .files import lock_file
from .hints import first_error_line
from .platform_tags import glibc_of, host_arch, machine

log = logging.getLogger(__name__)

BOOTSTRAP_SCRIPT = workflow_dir() / "containers" / "debian" / "bootstrap.sh"
BUILD_SCRIPT = Path(__file__).resolve().parent / "container_build.py"
#: the one stdlib module container_build.py imports from the refinery (mounted beside it)
TAGS_SCRIPT = BUILD_SCRIPT.with_name("platform_tags.py")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_IMAGE_CACHE = Path(os.environ.get("REFINERY_IMAGE_CACHE", "/var/cache/refinery-images"))

# Where things appear inside the container.
C_WORK = "/work"
C_SCRIPT = "/refinery/container_build.py"
C_TAGS = "/refinery/platform_tags.py"
C_SRC = "/refinery/src"
C_LINKS = "/refinery/links"
C_CA = "/refinery/ca-bundle.crt"

ULIMITS = ("nofile=1024:20000", "nproc=4096:4096")

# machine (platform tag) -> (Debian arch, OCI arch, ELF (class, endianness, e_machine))
ARCHES: dict[str, tuple[str, str, tuple[int, str, int]]] = {
    "s390x": ("s390x", "s390x", (2, "big", 22)),
    "x86_64": ("amd64", "amd64", (2, "little", 62)),
    "aarch64": ("arm64", "arm64", (2, "little", 183)),
    "ppc64le": ("ppc64el", "ppc64le", (2, "little", 21)),
}

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
_MEMORY = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)


@dataclass(frozen=True)
class Preset:
    """A builder image: what it is called, how it installs packages, what it can yield."""

    name: str
    image: str  # reference; "{deb_arch}" is replaced by the Debian architecture
    family: str  # "dnf" | "apt"
    python: str  # the interpreter command inside the image
    base: str  # the distribution it is built from
    glibc: tuple[int, int]  # its glibc: the most compatible manylinux it guarantees
    build_command: str  # how a user builds the image; "{arch}" is replaced
    bootstrap: bool = False  # built automatically on first use (debian)

    def image_for(self, arch: str) -> str:
        return self.image.format(deb_arch=deb_arch(arch))

    @property
    def policy(self) -> str:
        return "manylinux_{}_{}".format(*self.glibc)


PRESETS: dict[str, Preset] = {
    "rocky": Preset("rocky", "local/refinery-rocky:latest", "dnf", "python3",
                    "Rocky Linux 9", (2, 34), "make build-rocky TAG=latest REGISTRY=local"),
    "fedora": Preset("fedora", "local/refinery-fedora:latest", "dnf", "python3",
                     "Fedora 41", (2, 40), "make build-fedora TAG=latest REGISTRY=local"),
    "ubuntu": Preset("ubuntu", "local/refinery-ubuntu:latest", "apt", "python3",
                     "Ubuntu 22.04", (2, 35), "make build-ubuntu TAG=latest REGISTRY=local"),
    "debian": Preset("debian", "localhost/refinery-debian-{deb_arch}:bookworm", "apt", "python3",
                     "Debian 12 bookworm", (2, 36), "make build-debian ARCH={arch}",
                     bootstrap=True),
}

# Public bases older than every preset, for policies no preset guarantees (manylinux2014).
REFERENCE_BASES: tuple[tuple[str, tuple[int, int], str], ...] = (
    ("quay.io/pypa/manylinux2014_{arch}", (2, 17), "CentOS 7"),
    ("quay.io/pypa/manylinux_2_28_{arch}", (2, 28), "AlmaLinux 8"),
)


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into the container; read-only unless said otherwise."""

    source: Path
    target: str
    read_only: bool = True

    def flag(self) -> str:
        src = os.fspath(self.source)
        for part in (src, self.target):
            if ":" in part or "," in part:
                raise ConfigError(f"cannot bind-mount a path containing ':' or ',': {part}")
        if not Path(src).is_absolute() or not self.target.startswith("/"):
            raise ConfigError(f"bind mounts need absolute paths: {src} -> {self.target}")
        return f"{src}:{self.target}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True)
class ContainerBuildResult:
    """One successful container build: the repaired wheel on the host and what proves it."""

    wheel: Path
    auditwheel_tag: str | None
    auditwheel_show: str
    grafted_libs: tuple[str, ...]
    smoke: dict[str, Any]
    requested_tag: str
    built_wheel: str
    image: str
    arch: str
    limits: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    argv: tuple[str, ...] = ()
    log_path: Path | None = None

    def metadata(self) -> dict[str, Any]:
        """JSON-ready facts for the manifest and history."""
        return {
            "builder": "container",
            "image": self.image,
            "arch": self.arch,
            "requested_tag": self.requested_tag,
            "auditwheel_tag": self.auditwheel_tag,
            "grafted_libs": list(self.grafted_libs),
            "smoke": {k: self.smoke.get(k) for k in ("ok", "modules", "arch", "python")},
            "limits": self.limits,
            "timings": self.timings,
        }


class ImageError(BuildError):
    """The builder image is missing, for another architecture, or could not be made."""


class PolicyNotMetError(BuildError):
    """The wheel built but cannot honestly carry the requested manylinux tag."""

    def __init__(self, message: str, log_path: Path | None, *, requested: str, achieved: str,
                 blockers: dict[str, list[str]], symbols: dict[str, list[str]]):
        super().__init__(message, log_path)
        self.requested = requested
        self.achieved = achieved
        self.blockers = blockers
        self.symbols = symbols


# --- names ---------------------------------------------------------------------------------


def _arch(arch: str) -> tuple[str, str, tuple[int, str, int]]:
    try:
        return ARCHES[machine(arch)]
    except KeyError:
        raise ConfigError(f"unsupported container arch {arch!r} ({', '.join(ARCHES)})") from None


def deb_arch(arch: str) -> str:
    return _arch(arch)[0]


def oci_arch(arch: str) -> str:
    return _arch(arch)[1]


def engine_kind(engine: str) -> str:
    """'podman' or 'docker' from an engine command or path."""
    name = Path(engine).name
    for kind in ("podman", "docker"):
        if name.startswith(kind):
            return kind
    raise ConfigError(f"unknown container engine {engine!r}: use podman or docker")


def get_preset(preset: str | Preset | None) -> Preset | None:
    if preset is None or isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ConfigError(
            f"unknown container preset {preset!r} (one of {', '.join(PRESETS)})"
        ) from None


def policy_suggestion(requested: str, arch: str, achieved: str | None = None) -> str:
    """Which preset (or public base) guarantees the requested manylinux policy.

    A base guarantees manylinux_2_X when its glibc is 2.X or older: the linker then cannot
    pick newer symbol versions. (A newer base may still meet it when the code uses no newer
    symbols; auditwheel show decides that per wheel.)
    """
    glibc = glibc_of(requested)
    if glibc is None:
        return ""
    need = "glibc <= {}.{}".format(*glibc)
    fits = sorted((p for p in PRESETS.values() if p.glibc <= glibc), key=lambda p: p.glibc)
    if fits:
        names = ", ".join(f"{p.name} ({p.base}, glibc {p.glibc[0]}.{p.glibc[1]})" for p in fits)
        return (f"{requested} needs {need}: build with --container-preset {fits[-1].name} "
                f"(presets that guarantee it: {names})")
    presets = ", ".join(
        f"{p.name} glibc {p.glibc[0]}.{p.glibc[1]} -> {p.policy}"
        for p in sorted(PRESETS.values(), key=lambda p: p.glibc)
    )
    hint = f"{requested} needs {need}, older than every preset ({presets})"
    older = [(img.format(arch=arch), g, base) for img, g, base in REFERENCE_BASES if g <= glibc]
    if older:
        img, g, base = older[-1]
        hint += (f"; a base that meets it is {img} ({base}, glibc {g[0]}.{g[1]}): pass an "
                 "image built FROM it with python3, build and auditwheel as --container-image")
    if achieved:
        hint += f"; or target {achieved} with --platform-tag"
    return hint


def snakemake_container(
    preset: str | Preset | None,
    arch: str,
    *,
    image: str | None = None,
    registry: str = "local",
    tag: str = "latest",
    sif_dir: Path | None = None,
) -> str:
    """The value of a build rule's `container:` directive (--use-singularity / apptainer).

    Apptainer pulls `docker://` images from a registry, so rocky/fedora/ubuntu are named by
    the REGISTRY and TAG they were pushed with (`make build-rocky REGISTRY=... TAG=...`,
    then push). The debian image exists only locally: with `sif_dir` it is the .sif file
    converted from it (docs/containers.md), else its podman name.
    """
    if image:
        return image if ("://" in image or image.endswith(".sif")) else f"docker://{image}"
    spec = get_preset(preset)
    if spec is None:
        raise ConfigError("a container directive needs a preset or an image")
    if spec.bootstrap:
        if sif_dir is not None:
            return os.fspath(Path(sif_dir) / f"refinery-debian-{deb_arch(arch)}-bookworm.sif")
        return f"docker://{spec.image_for(arch)}"
    return f"docker://{registry}/refinery-{spec.name}:{tag}"


# --- images --------------------------------------------------------------------------------


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
    if image is None and spec is None:
        raise ConfigError("a container build needs --container-preset or --container-image")
    ref = image or spec.image_for(arch)  # type: ignore[union-attr]
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


@contextlib.contextmanager
def _image_lock(cache_dir: Path, ref: str) -> Iterator[None]:
    """One bootstrap per image at a time, across parallel build jobs."""
    try:
        lock = lock_file(cache_dir / (re.sub(r"[^\w.-]", "_", ref) + ".lock"))
    except OSError:
        yield  # an unwritable cache still allows using an existing image
        return
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


def check_emulation(arch: str) -> None:
    """A foreign arch needs a registered, enabled qemu-user binfmt handler."""
    name = machine(arch)
    if name == host_arch():
        return
    handler = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{name}"
    try:
        enabled = handler.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise BuildError(
            f"building for {name} on this {host_arch()} host needs qemu-user: "
            "apt-get install qemu-user-static binfmt-support; mount -t binfmt_misc binfmt_misc "
            f"/proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-{name} "
            "(.ci/install.d/20-containers.sh does all of it)"
        )


# --- the engine command line ---------------------------------------------------------------


def engine_argv(
    engine: str,
    image: str,
    command: Sequence[str],
    *,
    arch: str,
    mounts: Sequence[Mount] = (),
    env: Mapping[str, str] | None = None,
    pass_env: Sequence[str] = (),
    cpu: str | float | None = None,
    memory: str | None = None,
    network: bool | str = True,
    name: str | None = None,
    workdir: str | None = None,
    timeout: float | None = None,
    runtime: str | None = "runc",
) -> list[str]:
    """The `podman run` / `docker run` argument list (never a shell string) for one attempt.

    A fresh container (--rm, never pulled), for `arch`, with CPU and memory limits, the
    measured ulimits, and only `mounts` from the host (read-only unless a Mount says not).
    `env` is set inline (`--env K=V`: for values that may be logged); `pass_env` names are
    passed by name only (`--env NAME`): the engine copies their values from its own
    environment, so give them to the process that runs this argv (`engine_env`) and index
    credentials never appear in logs or `ps`. `network` is True (the engine's default
    network), False (`none`) or a network mode such as "host".
    `runtime` applies to podman only (crun fails on this host's hybrid cgroups).
    """
    kind = engine_kind(engine)
    argv = [engine, "run", "--rm", "--pull", "never"]
    if name:
        argv += ["--name", name]
    if kind == "podman":
        if runtime:
            argv += ["--runtime", runtime]
        argv += ["--arch", oci_arch(arch)]
    else:
        argv += ["--platform", f"linux/{oci_arch(arch)}"]
    if cpu not in (None, ""):
        argv += ["--cpus", _cpus(cpu)]
    if memory not in (None, ""):
        argv += ["--memory", _memory(memory)]
    for limit in ULIMITS:
        argv += ["--ulimit", limit]
    argv += ["--security-opt", "no-new-privileges"]
    if network is False or network == "none":
        argv += ["--network", "none"]
    elif isinstance(network, str) and network:
        argv += ["--network", network]
    if timeout and kind == "podman":
        # conmon kills the container itself if the client is killed first
        argv += ["--timeout", str(int(math.ceil(timeout)) + 30)]
    for m in mounts:
        argv += ["--volume", m.flag()]
    for key in [*sorted(env or {}), *sorted(pass_env)]:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ConfigError(f"invalid environment variable name {key!r}")
    for key, value in sorted((env or {}).items()):
        if "\n" in str(value):
            raise ConfigError(f"environment variable {key} holds a newline")
        argv += ["--env", f"{key}={value}"]
    for key in sorted(set(pass_env) - set(env or {})):
        argv += ["--env", key]
    if workdir:
        argv += ["--workdir", workdir]
    argv.append(image)
    argv.extend(os.fspath(c) for c in command)
    return argv


def engine_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """The environment of the engine process for an argv made by `engine_argv`: no secrets
    of this host's (the engine passes on only the names it is told, but its hooks and
    helpers see its whole environment)."""
    return safe_env.engine_env(env)


def _cpus(cpu: str | float) -> str:
    try:
        value = float(cpu)
    except (TypeError, ValueError):
        raise ConfigError(f"--container-cpu must be a number of CPUs, not {cpu!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"--container-cpu must be a positive number, not {cpu!r}")
    return f"{value:g}"


def _memory(memory: str) -> str:
    text = str(memory).strip()
    if not _MEMORY.match(text):
        raise ConfigError(f"--container-memory must look like 4g, 512m or bytes, not {memory!r}")
    return text.lower()


# --- one build -----------------------------------------------------------------------------


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


def _attempt_env(
    env: Mapping[str, str] | None, find_links: Sequence[Path], work_dir: Path,
    ca_bundle: Path | None,
) -> tuple[dict[str, str], dict[str, str], list[Mount]]:
    """(variables passed by name, fixed variables, mounts) of one container run: the build's
    own variables, the work folder (the only writable mount), the script, the CA bundle."""
    user_env, mounts = container_env(env, find_links)
    fixed_env = {
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
        *mounts,
    ]
    if ca_bundle is not None and Path(ca_bundle).is_file():
        mounts.append(Mount(Path(ca_bundle).resolve(), C_CA))
        for key in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            fixed_env[key] = C_CA
    return user_env, fixed_env, mounts


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
        for sub in ("tmp", "home"):
            (work_dir / sub).mkdir(parents=True)
        request = {"install_only": True, "system_packages": list(packages), "family": family,
                   "work": C_WORK, "result": f"{C_WORK}/result.json"}
        (work_dir / "request.json").write_text(json.dumps(request, indent=2))
        user_env, fixed_env, mounts = _attempt_env({}, [], work_dir, HOST_CA_BUNDLE)
        name = f"refinery-libs-{uuid.uuid4().hex[:12]}"
        argv = engine_argv(engine, image, ["python3", C_SCRIPT, f"{C_WORK}/request.json"],
                           arch=arch, mounts=mounts, env=fixed_env, name=name, workdir=C_WORK,
                           timeout=timeout)
        argv.remove("--rm")  # committed below, then removed
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"# target libraries for the cross build: {' '.join(packages)} into "
                     f"{image} -> {ref}\n")
        try:
            res = proc.run(argv, log_path=log_path, timeout=timeout, check=False)
            data = json.loads((work_dir / "result.json").read_text()) \
                if (work_dir / "result.json").is_file() else {}
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


def smoke_in_container(
    wheel: Path,
    work_dir: Path,
    *,
    engine: str,
    image: str,
    arch: str,
    python_tag: str,
    log_path: Path,
    find_links: Sequence[Path] = (),
    timeout: float | None = None,
    python: str = "python3",
) -> dict[str, Any]:
    """Install `wheel` (built elsewhere) in a fresh container of `arch`, network off, and import
    its top-level modules there (qemu-user on a foreign host); its runtime dependencies come
    from `find_links` when they are there. Returns the smoke record; raises BuildError naming
    the import error when a module does not import."""
    check_emulation(arch)
    wheel = Path(wheel).resolve()
    work_dir = Path(work_dir).resolve()
    for sub in ("smoke", "tmp", "home", "wheel"):
        shutil.rmtree(work_dir / sub, ignore_errors=True)
    for sub in ("tmp", "home", "wheel"):
        (work_dir / sub).mkdir(parents=True)
    shutil.copyfile(wheel, work_dir / "wheel" / wheel.name)
    result_file = work_dir / "result.json"
    result_file.unlink(missing_ok=True)
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": " ".join(str(p) for p in find_links)}
    user_env, fixed_env, mounts = _attempt_env(env if find_links else {"PIP_NO_INDEX": "1"},
                                               [], work_dir, None)
    request = {
        "smoke_only": True,
        "wheel": f"{C_WORK}/wheel/{wheel.name}",
        "work": C_WORK,
        "result": f"{C_WORK}/result.json",
        "python_tag": python_tag,
    }
    (work_dir / "request.json").write_text(json.dumps(request, indent=2))
    name = f"refinery-smoke-{uuid.uuid4().hex[:12]}"
    argv = engine_argv(
        engine, image, [python, C_SCRIPT, f"{C_WORK}/request.json"], arch=arch, mounts=mounts,
        env=fixed_env, pass_env=sorted(user_env), network=False, name=name, workdir=C_WORK,
        timeout=timeout,
    )
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"# smoke import of {wheel.name} in {image} ({arch}), network none\n")
    try:
        res = proc.run(argv, log_path=log_path, env=engine_env(user_env), timeout=timeout,
                       check=False)
    except CommandError as exc:
        raise BuildError(f"container engine {engine!r} cannot be run: {exc}", log_path) from exc
    if res.timed_out:
        proc.run([engine, "rm", "--force", name], check=False, timeout=120)
        raise BuildError(f"smoke import of {wheel.name} timed out after {timeout:g} s", log_path)
    if not result_file.is_file():
        raise BuildError(f"smoke import of {wheel.name} exited {res.returncode} without a "
                         f"result: {first_error_line(log_path)}", log_path)
    data = json.loads(result_file.read_text())
    smoke = data.get("smoke") or {}
    record = {"ok": bool(smoke.get("ok")), "modules": smoke.get("modules") or {},
              "arch": smoke.get("arch"), "python": smoke.get("python"),
              "dependencies_installed": smoke.get("dependencies_installed"),
              "image": image, "network": "none"}
    if not data.get("ok"):
        raise BuildError(f"smoke import failed: {data.get('detail') or 'no result'}", log_path)
    return record


def build_in_container(
    sdist: Path,
    work_dir: Path,
    *,
    engine: str,
    image: str,
    preset: str | Preset | None,
    arch: str,
    target_platform_tag: str,
    python_tag: str,
    variant: str = "isolated",
    system_packages: Sequence[str] = (),
    recipe_steps: Sequence[Sequence[str]] = (),
    env: Mapping[str, str] | None = None,
    cpu: str | float | None = None,
    memory: str | None = None,
    log_path: Path,
    timeout: float | None = None,
    network: bool | str = True,
    find_links: Sequence[Path] = (),
    family: str | None = None,
    python: str | None = None,
    smoke: bool = True,
    ca_bundle: Path | None = HOST_CA_BUNDLE,
    config_settings: Sequence[str] = (),
) -> ContainerBuildResult:
    """Build, repair and smoke-test `sdist` in a fresh container; return the repaired wheel.

    `work_dir` is this attempt's own folder (created; its build subfolders are reset) and the
    only host path the container can write; the wheel is left in `work_dir/out/`, for the
    caller to move. `env` holds the build's own variables (PIP_INDEX_URL, overrides' env), not
    os.environ. Raises PolicyNotMetError when the wheel cannot honestly carry
    `target_platform_tag` (the message names the blocking symbol versions and which preset
    or base would meet it), BuildError for any other failure (timeout, build error, failed
    smoke import); `log_path` receives the engine command line and all container output.
    """
    spec = get_preset(preset)
    sdist = Path(sdist).resolve()
    if not sdist.is_file():
        raise BuildError(f"sdist {sdist} does not exist", log_path)
    if variant not in ("isolated", "no-isolation"):
        raise ConfigError(f"unknown build variant {variant!r} (isolated, no-isolation)")
    check_emulation(arch)
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("src", "dist", "repaired", "out", "smoke", "elf", "tmp", "home"):
        shutil.rmtree(work_dir / sub, ignore_errors=True)
    for sub in ("tmp", "home"):
        (work_dir / sub).mkdir()
    result_file = work_dir / "result.json"
    result_file.unlink(missing_ok=True)

    user_env, fixed_env, mounts = _attempt_env(env, find_links, work_dir, ca_bundle)
    mounts = [*mounts, Mount(sdist, f"{C_SRC}/{sdist.name}")]
    request = {
        "sdist": f"{C_SRC}/{sdist.name}",
        "work": C_WORK,
        "result": f"{C_WORK}/result.json",
        "platform_tag": target_platform_tag,
        "python_tag": python_tag,
        "variant": variant,
        "family": family or (spec.family if spec else None),
        "system_packages": list(system_packages),
        "recipe_steps": [list(step) for step in recipe_steps],
        "config_settings": list(config_settings),
        "smoke": smoke,
    }
    (work_dir / "request.json").write_text(json.dumps(request, indent=2))
    name = f"refinery-{uuid.uuid4().hex[:12]}"
    interpreter = python or (spec.python if spec else "python3")
    argv = engine_argv(
        engine, image, [interpreter, C_SCRIPT, f"{C_WORK}/request.json"],
        arch=arch, mounts=mounts, env=fixed_env, pass_env=sorted(user_env), cpu=cpu,
        memory=memory, network=network,
        name=name, workdir=C_WORK, timeout=timeout,
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(
            f"# container build of {sdist.name}: image {image} ({arch}), target "
            f"{target_platform_tag} {python_tag}, variant {variant}, cpus {cpu or '-'}, "
            f"memory {memory or '-'}, network {network}\n"
            f"# build env passed by name: {', '.join(sorted(user_env)) or '-'}\n"
        )
    try:
        res = proc.run(argv, log_path=log_path, env=engine_env(user_env), timeout=timeout,
                       check=False)
    except CommandError as exc:  # the engine itself could not start
        raise BuildError(f"container engine {engine!r} cannot be run: {exc}", log_path) from exc
    if res.timed_out:
        proc.run([engine, "rm", "--force", name], check=False, timeout=120)
        raise BuildError(f"container build of {sdist.name} timed out after {timeout:g} s",
                         log_path)
    if not result_file.is_file():
        raise BuildError(
            f"container build of {sdist.name} exited {res.returncode} without a result: "
            f"{first_error_line(log_path)}", log_path)
    data = json.loads(result_file.read_text())
    if not data.get("ok"):
        _raise_failure(data, target_platform_tag, arch, log_path)
    return _result(data, work_dir, argv, image, arch, target_platform_tag, log_path)


def _raise_failure(data: dict, requested: str, arch: str, log_path: Path) -> None:
    detail = data.get("detail") or "container build failed"
    if data.get("failed_stage") == "policy":
        policy = data.get("policy") or {}
        hint = policy_suggestion(requested, arch, policy.get("achieved"))
        raise PolicyNotMetError(
            f"{detail}. {hint}" if hint else detail, log_path,
            requested=requested, achieved=policy.get("achieved") or "",
            blockers=policy.get("blockers") or {}, symbols=policy.get("blocking_symbols") or {},
        )
    stage = data.get("failed_stage") or data.get("stage") or "?"
    raise BuildError(f"{stage} stage failed: {detail}", log_path)


def _result(data: dict, work_dir: Path, argv: list[str], image: str, arch: str,
            requested: str, log_path: Path) -> ContainerBuildResult:
    # The result file was written where build code ran: trust only a plain wheel in out/.
    name = str(data.get("wheel") or "")
    out = work_dir / "out"
    wheel = out / name
    if ("/" in name or not name.endswith(".whl") or wheel.is_symlink() or not wheel.is_file()
            or wheel.resolve().parent != out.resolve()):
        raise BuildError(f"container build reported no usable wheel ({name!r})", log_path)
    check_wheel_arch(wheel, arch, log_path)
    smoke = data.get("smoke") or {}
    return ContainerBuildResult(
        wheel=wheel,
        auditwheel_tag=data.get("auditwheel_tag"),
        auditwheel_show=data.get("auditwheel_show") or "",
        grafted_libs=tuple(data.get("grafted_libs") or ()),
        smoke={"ok": bool(smoke.get("ok")), "modules": smoke.get("modules") or {},
               "arch": smoke.get("arch"), "output": smoke.get("output") or "",
               "python": smoke.get("python"),
               "dependencies_installed": smoke.get("dependencies_installed")},
        requested_tag=requested,
        built_wheel=str(data.get("built_wheel") or ""),
        image=image,
        arch=arch,
        limits=data.get("limits") or {},
        timings=data.get("timings") or {},
        duration=float(data.get("duration") or 0.0),
        argv=tuple(argv),
        log_path=log_path,
    )


def elf_header(data: bytes) -> tuple[int, str, int] | None:
    """(ELF class, endianness, e_machine) of an ELF file's first bytes, or None."""
    if len(data) < 20 or data[:4] != b"\x7fELF":
        return None
    endian = "big" if data[5] == 2 else "little"
    return data[4], endian, int.from_bytes(data[18:20], endian)


def check_wheel_arch(wheel: Path, arch: str, log_path: Path | None = None) -> list[str]:
    """Every shared object in the wheel must be an ELF for `arch`; returns their names."""
    want = _arch(arch)[2]
    found = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not re.search(r"\.so(\.[\d.]+)?$", info.filename):
                continue
            with zf.open(info) as fh:
                header = elf_header(fh.read(20))
            if header != want:
                raise BuildError(f"{info.filename} in {wheel.name} is not a {arch} ELF "
                                 f"(class, endianness, machine = {header})", log_path)
            found.append(info.filename)
    return found
