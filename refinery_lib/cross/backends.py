"""How each build backend is told to cross-compile, through its own cross hooks:

- setuptools (and anything using distutils/sysconfig: Cython's build_ext, cffi): the target's
  sysconfig data (`_PYTHON_SYSCONFIGDATA_NAME` on `PYTHONPATH`), `_PYTHON_HOST_PLATFORM` for
  the wheel tag, CC/CXX/LDSHARED/LDCXXSHARED naming zig, and the target's Python headers;
- meson-python: a meson cross file (`-Csetup-args=--cross-file=...`) with zig as the
  compilers, the host machine section, the target's pkg-config folder and sysroot, and
  qemu-user as the exe_wrapper for the tests meson runs;
- scikit-build-core and other CMake users: a toolchain file (`CMAKE_TOOLCHAIN_FILE`, which
  CMake reads from the environment) with the same compilers, find-root and emulator;
- Rust (setuptools-rust, maturin): `CARGO_BUILD_TARGET` and zig as the target's linker, so
  cargo builds for the target or fails naming the missing target, never silently for the
  host; PyO3 reads the target interpreter from `PYO3_CROSS_LIB_DIR` (its sysconfig data).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .sysroot import TargetPython
from .toolchain import ZIG_ARCH, Toolchain

# platform-tag machine -> (meson cpu_family, endianness, Rust target triple)
MACHINES = {
    "s390x": ("s390x", "big", "s390x-unknown-linux-gnu"),
    "x86_64": ("x86_64", "little", "x86_64-unknown-linux-gnu"),
    "aarch64": ("aarch64", "little", "aarch64-unknown-linux-gnu"),
    "ppc64le": ("ppc64", "little", "powerpc64le-unknown-linux-gnu"),
}


@dataclass(frozen=True)
class CrossBuild:
    """Everything a cross attempt adds to a build: variables and backend config settings."""

    env: dict[str, str]
    config_settings: tuple[str, ...]  # KEY=VALUE pairs for the PEP 517 hooks
    pythonpath: str  # the hook's PYTHONPATH: only the target's sysconfig data
    cross_file: Path
    toolchain_file: Path


def emulator(tp: TargetPython) -> tuple[str, ...]:
    """How this host runs a target program: qemu-user with the target's root for its loader."""
    qemu = shutil.which(f"qemu-{tp.machine}-static") or shutil.which(f"qemu-{tp.machine}")
    return (qemu, "-L", str(tp.root)) if qemu else ()


def _meson_list(items: list[str]) -> str:
    return "[" + ", ".join(_meson_str(i) for i in items) + "]"


def _meson_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def meson_cross_file(tc: Toolchain, tp: TargetPython, flags: list[str],
                     link_flags: list[str]) -> str:
    family, endian, _ = MACHINES.get(tp.machine, (ZIG_ARCH.get(tp.machine, tp.machine),
                                                  "little", ""))
    emu = emulator(tp)
    pkgconfig = [str(tp.root / "usr" / "lib" / tp.multiarch / "pkgconfig"),
                 str(tp.root / "usr" / "share" / "pkgconfig")]
    lines = [
        "[binaries]",
        f"c = {_meson_list([str(tc.cc)])}",
        f"cpp = {_meson_list([str(tc.cxx)])}",
        f"ar = {_meson_list([str(tc.ar)])}",
        f"ranlib = {_meson_list([str(tc.tool('ranlib'))])}",
        "strip = ['true']",
        # meson looks for no pkg-config in a cross build unless named; it reads the target's
        # .pc files (pkg_config_libdir below)
        "pkg-config = ['pkg-config']",
    ]
    if emu:
        lines.append(f"exe_wrapper = {_meson_list(list(emu))}")
    lines += [
        "",
        "[host_machine]",
        "system = 'linux'",
        f"cpu_family = {_meson_str(family)}",
        f"cpu = {_meson_str(tp.machine)}",
        f"endian = {_meson_str(endian)}",
        "",
        "[properties]",
        # meson runs target test programs through the exe_wrapper: a plain boolean, not a string
        "needs_exe_wrapper = true",
        f"sys_root = {_meson_str(str(tp.libview))}",
        f"pkg_config_libdir = {_meson_list(pkgconfig)}",
        "",
        "[built-in options]",
        f"c_args = {_meson_list(flags)}",
        f"cpp_args = {_meson_list(flags)}",
        f"c_link_args = {_meson_list(link_flags)}",
        f"cpp_link_args = {_meson_list(link_flags)}",
        "",
    ]
    return "\n".join(lines)


def cmake_toolchain_file(tc: Toolchain, tp: TargetPython, prefix_maps: tuple[str, ...] = ()
                         ) -> str:
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    emu = emulator(tp)
    lines = [
        "set(CMAKE_SYSTEM_NAME Linux)",
        f"set(CMAKE_SYSTEM_PROCESSOR {q(tp.machine)})",
        f"set(CMAKE_C_COMPILER {q(str(tc.cc))})",
        f"set(CMAKE_CXX_COMPILER {q(str(tc.cxx))})",
        f"set(CMAKE_AR {q(str(tc.ar))} CACHE FILEPATH \"\")",
        f"set(CMAKE_RANLIB {q(str(tc.tool('ranlib')))} CACHE FILEPATH \"\")",
        f"set(CMAKE_FIND_ROOT_PATH {q(str(tp.libview))})",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
        # FindPython cannot run the target interpreter: name its headers and suffix
        f"set(Python_INCLUDE_DIR {q(str(tp.include / f'python{tp.version}'))})",
        f"set(Python3_INCLUDE_DIR {q(str(tp.include / f'python{tp.version}'))})",
        f"set(Python_SOABI {q(tp.ext_suffix.strip('.').rsplit('.', 1)[0])})",
        f"set(Python3_SOABI {q(tp.ext_suffix.strip('.').rsplit('.', 1)[0])})",
        f"include_directories(SYSTEM {q(str(tp.include))})",
    ]
    if prefix_maps:
        joined = q(" ".join(prefix_maps))
        lines += [f"set(CMAKE_C_FLAGS_INIT {joined})", f"set(CMAKE_CXX_FLAGS_INIT {joined})"]
    if emu:
        lines.append(f"set(CMAKE_CROSSCOMPILING_EMULATOR {q(';'.join(emu))})")
    return "\n".join(lines) + "\n"


def cross_build(tc: Toolchain, tp: TargetPython, folder: Path, backend: str,
                libraries: tuple[Path, ...] = (), prefix_maps: tuple[str, ...] = ()
                ) -> CrossBuild:
    """The cross settings of one attempt; the cross and toolchain files are written to
    `folder` (the attempt's own); meson builds in `folder/../meson-build`, a fixed folder, so
    rebuilds compile the same paths. `libraries` are prefixes of target libraries built from
    source (libraries.py): searched first, for headers and for static archives. `prefix_maps`
    go into every compile."""
    folder.mkdir(parents=True, exist_ok=True)
    flags = [*(f"-I{p / 'include'}" for p in libraries), *tp.include_flags,
             *tp.library_flags, *prefix_maps]
    link_flags = [*(f"-L{p / 'lib'}" for p in libraries), *tp.link_flags]
    cross_file = folder / "meson-cross.ini"
    cross_file.write_text(meson_cross_file(tc, tp, flags, link_flags))
    toolchain_file = folder / "cmake-toolchain.cmake"
    toolchain_file.write_text(cmake_toolchain_file(tc, tp, prefix_maps))
    cc, cxx = str(tc.cc), str(tc.cxx)
    joined = " ".join(flags)
    env = {
        "CC": cc,
        "CXX": cxx,
        "AR": str(tc.ar),
        "RANLIB": str(tc.tool("ranlib")),
        "LDSHARED": f"{cc} -shared",
        "LDCXXSHARED": f"{cxx} -shared",
        "CPPFLAGS": joined,
        "_PYTHON_HOST_PLATFORM": f"linux-{tp.machine}",
        "_PYTHON_SYSCONFIGDATA_NAME": tp.sysconfig_name,
        "CMAKE_TOOLCHAIN_FILE": str(toolchain_file),
        "PKG_CONFIG_LIBDIR": os.pathsep.join(
            [str(tp.root / "usr" / "lib" / tp.multiarch / "pkgconfig"),
             str(tp.root / "usr" / "share" / "pkgconfig")]),
        "PKG_CONFIG_SYSROOT_DIR": str(tp.libview),
        "LDFLAGS": " ".join(link_flags),
        **tc.env(),
    }
    rust = MACHINES.get(tp.machine, ("", "", ""))[2]
    if rust:
        env["CARGO_BUILD_TARGET"] = rust
        # PyO3/maturin read the target interpreter from its sysconfig data, not by running it
        env["PYO3_CROSS_LIB_DIR"] = str(tp.sysconfig_dir)
        env["PYO3_CROSS_PYTHON_VERSION"] = tp.version
        env[f"CARGO_TARGET_{rust.upper().replace('-', '_')}_LINKER"] = cc
    settings: tuple[str, ...] = ()
    if backend == "mesonpy":
        # meson-python's default build folder has a random name, compiled into debug info
        settings = (f"setup-args=--cross-file={cross_file}",
                    f"build-dir={folder.parent / 'meson-build'}")
    elif backend.startswith("scikit_build_core"):
        settings = (f"cmake.define.CMAKE_TOOLCHAIN_FILE={toolchain_file}",)
    return CrossBuild(env, settings, str(tp.sysconfig_dir), cross_file, toolchain_file)
