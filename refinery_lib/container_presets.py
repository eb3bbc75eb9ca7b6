"""Builder images and the names of architectures.

A preset is a builder image: its reference, how it installs packages, its Python and the glibc
that bounds the manylinux policy it guarantees. This module also names an arch the ways the
engine, Debian and ELF headers do, says which preset (or public base) meets a requested
policy, and gives a build rule's `container:` directive (apptainer/singularity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import BuildError, ConfigError
from .platform_tags import glibc_of, machine

#: (ELF class, byte order, e_machine) of an ELF file's header
ElfIdent = tuple[int, Literal["little", "big"], int]


@dataclass(frozen=True)
class ArchNames:
    """One machine as Debian (`dpkg --print-architecture`), an OCI platform and ELF name it."""

    deb: str
    oci: str
    elf: ElfIdent


#: machine (as in a platform tag) -> its other names
ARCHES: dict[str, ArchNames] = {
    "s390x": ArchNames("s390x", "s390x", (2, "big", 22)),
    "x86_64": ArchNames("amd64", "amd64", (2, "little", 62)),
    "aarch64": ArchNames("arm64", "arm64", (2, "little", 183)),
    "ppc64le": ArchNames("ppc64el", "ppc64le", (2, "little", 21)),
}


def arch_names(arch: str) -> ArchNames:
    """The names of `arch` (any alias `platform_tags.machine` knows); ConfigError otherwise."""
    try:
        return ARCHES[machine(arch)]
    except KeyError:
        raise ConfigError(f"unsupported container arch {arch!r} ({', '.join(ARCHES)})") from None


def deb_arch(arch: str) -> str:
    return arch_names(arch).deb


def oci_arch(arch: str) -> str:
    return arch_names(arch).oci


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

# Public bases older than every preset, for policies no preset guarantees (manylinux2014):
# (reference with "{arch}", glibc, distribution)
REFERENCE_BASES: tuple[tuple[str, tuple[int, int], str], ...] = (
    ("quay.io/pypa/manylinux2014_{arch}", (2, 17), "CentOS 7"),
    ("quay.io/pypa/manylinux_2_28_{arch}", (2, 28), "AlmaLinux 8"),
)


class PolicyNotMetError(BuildError):
    """The wheel built but cannot honestly carry the requested manylinux tag."""

    def __init__(self, message: str, log_path: Path | None, *, requested: str, achieved: str,
                 blockers: dict[str, list[str]], symbols: dict[str, list[str]]):
        super().__init__(message, log_path)
        self.requested = requested
        self.achieved = achieved
        self.blockers = blockers
        self.symbols = symbols


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
