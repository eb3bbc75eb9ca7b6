"""Linux platform tags and machine names: the one table of each.

Standard library only (Python >= 3.8): builder containers run `container_build.py` with the
image's own Python and nothing of the refinery's dependencies, so this file is mounted next to
it (`container_run.C_TAGS`) and imported from there; on the host it is `refinery_lib.platform_tags`
(`targets.py` builds the target's tag sets on it).
"""

from __future__ import annotations

import platform as _platform
import re

#: The CPU architectures a Linux platform tag (manylinux, musllinux, linux_*) may name: the
#: ones the manylinux and musllinux policies cover. A tag naming another arch
#: (`manylinux2014_s390`) is a typo that would otherwise plan a run no wheel can match.
KNOWN_ARCHES = (
    "x86_64",
    "i686",
    "aarch64",
    "armv7l",
    "ppc64le",
    "ppc64",
    "s390x",
    "riscv64",
    "loongarch64",
)
#: the legacy manylinux names (PEP 513, 571, 599) and the glibc each stands for (PEP 600)
MANYLINUX_ALIASES = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
#: other names of a machine (what `platform.machine()` says on some systems, Debian's and
#: OCI's architecture names) -> the name platform tags use
MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}
_VERSIONED = re.compile(r"^(manylinux|musllinux)_(\d+)_(\d+)$")


def machine(name: str) -> str:
    """The platform-tag name of a machine or architecture name: amd64 -> x86_64,
    arm64 -> aarch64, ppc64el -> ppc64le; any other name as it is, lower case."""
    name = name.lower()
    return MACHINE_ALIASES.get(name, name)


def host_arch() -> str:
    """This host's machine as platform tags name it."""
    return machine(_platform.machine())


def split_platform(tag: str):
    """(libc family, (major, minor), arch) of a platform tag: ('manylinux', (2, 17),
    's390x') for manylinux2014_s390x and manylinux_2_17_s390x, ('musllinux', (1, 2),
    'aarch64') for musllinux_1_2_aarch64; the family and version are None for linux_* and
    anything else, the arch too when it is none of KNOWN_ARCHES."""
    for arch in KNOWN_ARCHES:
        if tag.endswith("_" + arch):
            base = tag[: -len(arch) - 1]
            break
    else:
        return None, None, None
    if base in MANYLINUX_ALIASES:
        return "manylinux", MANYLINUX_ALIASES[base], arch
    m = _VERSIONED.match(base)
    if m:
        return m.group(1), (int(m.group(2)), int(m.group(3))), arch
    return None, None, arch


def glibc_of(tag: str):
    """The glibc floor a manylinux tag promises ((2, 17) for manylinux2014_s390x and
    manylinux_2_17_s390x); None for musllinux, linux_* and anything else."""
    family, version, _ = split_platform(tag)
    return version if family == "manylinux" else None
