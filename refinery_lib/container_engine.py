"""The container engine's command line: `podman run` / `docker run` argument lists.

Also the engine's own environment, the checks of CPU and memory limits and bind mounts, and
whether this host can run a container of another architecture (qemu-user through binfmt_misc).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import safe_env
from .container_presets import oci_arch
from .errors import BuildError, ConfigError
from .platform_tags import host_arch, machine

ULIMITS = ("nofile=1024:20000", "nproc=4096:4096")
#: where the kernel lists the registered binfmt_misc handlers (qemu-<machine>)
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

_MEMORY = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def engine_kind(engine: str) -> str:
    """'podman' or 'docker' from an engine command or path."""
    name = Path(engine).name
    for kind in ("podman", "docker"):
        if name.startswith(kind):
            return kind
    raise ConfigError(f"unknown container engine {engine!r}: use podman or docker")


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
    if cpu is not None and cpu != "":
        argv += ["--cpus", _cpus(cpu)]
    if memory:
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
        if not _ENV_NAME.match(key):
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


def _read_text(path: Path) -> str:
    return path.read_text()


def check_emulation(arch: str, read: Callable[[Path], str] = _read_text) -> None:
    """A foreign arch needs a registered, enabled qemu-user binfmt handler; `read` reads the
    handler's file under BINFMT_DIR (an OSError there means none is registered)."""
    name = machine(arch)
    if name == host_arch():
        return
    try:
        enabled = read(BINFMT_DIR / f"qemu-{name}").splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise BuildError(
            f"building for {name} on this {host_arch()} host needs qemu-user: "
            "apt-get install qemu-user-static binfmt-support; mount -t binfmt_misc binfmt_misc "
            f"/proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-{name} "
            "(.ci/install.d/20-containers.sh does all of it)"
        )
