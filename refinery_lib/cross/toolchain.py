"""zig (from the `ziglang` wheel) as the C and C++ compiler, archiver and linker of the target.

`zig cc -target s390x-linux-gnu.2.17` compiles for s390x and links against glibc 2.17's symbol
versions, whatever glibc this host has, and links zig's own libc++ statically: the glibc floor
of a manylinux tag becomes a compiler flag. Build systems want one executable per tool, so each
tool is a small wrapper script in a folder of the cache (paths are ours, never user data).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import proc
from ..errors import BuildError, CommandError
from ..files import exclusive
from ..targets import Target

# platform-tag machine -> zig's architecture name
ZIG_ARCH = {
    "s390x": "s390x",
    "x86_64": "x86_64",
    "aarch64": "aarch64",
    "ppc64le": "powerpc64le",
    "i686": "x86",
    "armv7l": "arm",
    "riscv64": "riscv64",
}
# the tools each toolchain folder holds: name -> zig subcommand
TOOLS = {"cc": "cc", "c++": "c++", "ar": "ar", "ranlib": "ranlib"}


def zig_target(target: Target) -> str:
    """zig's `-target` for a platform tag: the glibc floor from manylinux, musl for musllinux.

    manylinux2014_s390x -> s390x-linux-gnu.2.17; manylinux_2_28_aarch64 ->
    aarch64-linux-gnu.2.28; musllinux_1_2_s390x -> s390x-linux-musl; linux_s390x ->
    s390x-linux-gnu (zig's default glibc)."""
    arch = ZIG_ARCH.get(target.arch)
    if arch is None:
        raise BuildError(f"the cross builder has no zig target for {target.arch}")
    glibc = target.glibc
    if target.platform_tag.startswith("musllinux"):
        return f"{arch}-linux-musl"
    if glibc is None:
        return f"{arch}-linux-gnu"
    return f"{arch}-linux-gnu.{glibc[0]}.{glibc[1]}"


@lru_cache(maxsize=1)
def zig_executable() -> Path:
    """The zig binary of the installed `ziglang` wheel."""
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(
            "the cross builder needs zig: pip install ziglang (a dependency of the refinery)"
        )
    for base in spec.submodule_search_locations:
        exe = Path(base) / "zig"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    raise BuildError("the ziglang package has no zig executable")


@lru_cache(maxsize=1)
def zig_version() -> str:
    try:
        return proc.run([zig_executable(), "version"], timeout=60).output.strip()
    except CommandError as exc:
        raise BuildError(f"zig does not run: {exc}") from exc


@dataclass(frozen=True)
class Toolchain:
    """A folder of wrapper scripts (cc, c++, ar, ranlib) for one zig target."""

    target: str  # zig's -target, e.g. s390x-linux-gnu.2.17
    bin: Path
    cache: Path  # zig's global cache (its libc and libc++ for the target, built once)
    version: str

    def tool(self, name: str) -> Path:
        return self.bin / name

    @property
    def cc(self) -> Path:
        return self.tool("cc")

    @property
    def cxx(self) -> Path:
        return self.tool("c++")

    @property
    def ar(self) -> Path:
        return self.tool("ar")

    def env(self) -> dict[str, str]:
        """Where zig keeps its caches: in the refinery's cache, not the build's HOME."""
        return {"ZIG_GLOBAL_CACHE_DIR": str(self.cache)}


# A cross compiler must never see this host's system folders: `-I/usr/include` (added by
# build scripts that guess the platform, or from the target's sysconfig INCLUDEDIR) would put
# this host's libc headers before zig's. Like a compiler with --sysroot, the wrappers read
# them as the target's: headers from the library view (no libc headers: zig brings those for
# the glibc floor), libraries from the target's root; /usr/local is dropped.
_WRAPPER = """#!/bin/sh
# refinery: {name} for {triple}; this host's system folders mean the target's
view={view}
root={root}
for arg do
    shift
    case "$arg" in
        -I/usr/local/*|-L/usr/local/*) continue ;;
        -I/usr/include|-I/usr/include/*) arg="-I$view${{arg#-I}}" ;;
        -isystem/usr/include|-isystem/usr/include/*) arg="-isystem$view${{arg#-isystem}}" ;;
        -L/usr/lib|-L/usr/lib/*|-L/lib|-L/lib/*|-L/usr/lib64|-L/lib64) arg="-L$root${{arg#-L}}" ;;
    esac
    set -- "$@" "$arg"
done
exec {command} "$@"
"""


def toolchain(target: Target, root: Path, view: Path | None = None,
              sysroot: Path | None = None, key: str = "") -> Toolchain:
    """The wrappers for `target` under `root` (made once; rewritten when zig moved). With
    `view` and `sysroot` (the target's library view and root, see sysroot.py) host system
    folders on a command line are read as the target's."""
    triple = zig_target(target)
    zig = zig_executable()
    folder = root / (f"toolchain-{triple}-{key}" if key else f"toolchain-{triple}")
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    cache = root / "zig-cache"
    cache.mkdir(parents=True, exist_ok=True)
    with exclusive(folder / ".lock"):
        for name, sub in TOOLS.items():
            flags = ["-target", triple] if sub in ("cc", "c++") else []
            command = shlex.join([str(zig), sub, *flags])
            if view is not None and sysroot is not None and sub in ("cc", "c++"):
                text = _WRAPPER.format(name=name, triple=triple, command=command,
                                       view=shlex.quote(str(view)),
                                       root=shlex.quote(str(sysroot)))
            else:
                text = f"#!/bin/sh\n# refinery: {name} for {triple}\nexec {command} \"$@\"\n"
            path = bin_dir / name
            if not path.exists() or path.read_text() != text:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.chmod(0o755)
                os.replace(tmp, path)
    return Toolchain(triple, bin_dir, cache, zig_version())
