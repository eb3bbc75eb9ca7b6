"""Target libraries built from source for the cross builder (data/target_libraries.yaml).

A wheel may only claim manylinux2014 when every library it carries needs glibc 2.17 at most.
Debian's target-arch libraries need 2.36; these are compiled here by zig for the same target
as the extension, as static position-independent archives, so the extension links them in and
nothing is grafted. Each is built once per toolchain into `CACHE/cross/libs/`, from a pinned,
sha256-checked source archive whose every member passes tarfile's data filter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .. import proc
from ..errors import BuildError, CommandError, ConfigError
from ..files import exclusive, inside, write_json
from ..safe_env import build_base_env
from .backends import cmake_toolchain_file
from .sysroot import TargetPython
from .toolchain import Toolchain

CATALOG = Path(__file__).resolve().parent.parent / "data" / "target_libraries.yaml"
MAX_ARCHIVE_BYTES = 64 << 20
MAX_EXTRACTED_BYTES = 512 << 20
MAX_MEMBERS = 20_000


@dataclass(frozen=True)
class TargetLibrary:
    name: str
    version: str
    url: str
    sha256: str
    build: str = "cmake"  # cmake | configure (a zlib-style ./configure --prefix)
    args: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        blob = json.dumps([self.name, self.version, self.sha256, self.build, list(self.args)])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class BuiltLibrary:
    """A target library built for the toolchain's target: headers in PREFIX/include, static
    archives in PREFIX/lib (where `backends.cross_build` looks first)."""

    library: TargetLibrary
    prefix: Path


@lru_cache(maxsize=1)
def catalog() -> dict[str, TargetLibrary]:
    entries = yaml.safe_load(CATALOG.read_text())
    return {e["name"]: TargetLibrary(e["name"], str(e["version"]), e["url"], e["sha256"],
                                     e.get("build", "cmake"), tuple(e.get("args") or ()))
            for e in entries}


def lookup(names: list[str]) -> list[TargetLibrary]:
    known = catalog()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown target librar{'y' if len(unknown) == 1 else 'ies'} "
                          f"{', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [known[n] for n in names]


def build_libraries(names: list[str], tc: Toolchain, tp: TargetPython, root: Path,
                    log_path: Path) -> list[BuiltLibrary]:
    return [build_library(lib, tc, tp, root, log_path) for lib in lookup(names)]


def build_library(lib: TargetLibrary, tc: Toolchain, tp: TargetPython, root: Path,
                  log_path: Path) -> BuiltLibrary:
    """`lib` built for the toolchain's target under `root` (once; a marker says it is done)."""
    folder = inside(root, f"{lib.name}-{lib.version}-{tc.target}-{lib.digest}")
    marker = folder / "built.json"
    with exclusive(root / f".{folder.name}.lock"):
        if not marker.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            work = folder / "work"
            work.mkdir(parents=True)
            try:
                archive = _download(lib, work / Path(lib.url).name)
                src = _extract(archive, work / "src")
                if lib.build == "configure":
                    _configure(lib, src, folder / "prefix", tc, log_path)
                else:
                    _cmake(lib, src, work, folder / "prefix", tc, tp, log_path)
                # static archives only: the extension links them in, nothing to graft
                for shared in (folder / "prefix" / "lib").glob("*.so*"):
                    shared.unlink()
            except (CommandError, OSError) as exc:
                raise BuildError(f"building the target library {lib.name} {lib.version} for "
                                 f"{tc.target} failed: {exc}", log_path) from exc
            shutil.rmtree(work, ignore_errors=True)
            write_json(marker, {"name": lib.name, "version": lib.version,
                                "target": tc.target, "zig": tc.version})
    return BuiltLibrary(lib, folder / "prefix")


def _download(lib: TargetLibrary, dest: Path) -> Path:
    digest = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(lib.url, timeout=120) as resp, open(dest, "wb") as out:  # noqa: S310 - pinned http(s) URL from the catalog
        while chunk := resp.read(1 << 20):
            size += len(chunk)
            if size > MAX_ARCHIVE_BYTES:
                raise BuildError(f"{lib.url} is over {MAX_ARCHIVE_BYTES >> 20} MB")
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != lib.sha256:
        raise BuildError(f"{lib.url}: sha256 {digest.hexdigest()} is not the pinned "
                         f"{lib.sha256}")
    return dest


def _extract(archive: Path, dest: Path) -> Path:
    """Extract with every member checked (count, total size, tarfile's data filter)."""
    dest.mkdir(parents=True)
    total = 0
    with tarfile.open(archive) as tf:
        for count, member in enumerate(tf, 1):
            total += member.size
            if count > MAX_MEMBERS or total > MAX_EXTRACTED_BYTES:
                raise BuildError(f"{archive.name} unpacks to too much "
                                 f"({count} entries, {total >> 20} MB)")
            tf.extract(member, dest, filter="data")
    tops = [p for p in dest.iterdir()]
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else dest


def _cmake(lib: TargetLibrary, src: Path, work: Path, prefix: Path, tc: Toolchain,
           tp: TargetPython, log_path: Path) -> None:
    toolchain_file = work / "toolchain.cmake"
    toolchain_file.write_text(cmake_toolchain_file(tc, tp))
    build = work / "build"
    env = {**build_base_env(), **tc.env()}
    proc.run(["cmake", "-S", src, "-B", build, f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file}",
              f"-DCMAKE_INSTALL_PREFIX={prefix}", "-DCMAKE_BUILD_TYPE=Release",
              # absolute: libjpeg-turbo makes a relative LIBDIR absolute against the cwd
              "-DCMAKE_POSITION_INDEPENDENT_CODE=ON", f"-DCMAKE_INSTALL_LIBDIR={prefix}/lib",
              f"-DCMAKE_INSTALL_INCLUDEDIR={prefix}/include", *lib.args],
             log_path=log_path, env=env, cwd=work, timeout=1800)
    proc.run(["cmake", "--build", build, "--parallel", str(os.cpu_count() or 1)],
             log_path=log_path, env=env, cwd=work, timeout=3600)
    proc.run(["cmake", "--install", build], log_path=log_path, env=env, cwd=work, timeout=600)


def _configure(lib: TargetLibrary, src: Path, prefix: Path, tc: Toolchain,
               log_path: Path) -> None:
    """A configure script that takes CC/AR/CFLAGS from the environment (zlib's)."""
    env = {**build_base_env(), **tc.env(), "CC": str(tc.cc), "AR": str(tc.ar),
           "RANLIB": str(tc.tool("ranlib")), "CFLAGS": "-O2 -fPIC", "CHOST": tc.target}
    proc.run(["sh", "./configure", f"--prefix={prefix}", *lib.args], log_path=log_path,
             env=env, cwd=src, timeout=600)
    proc.run(["make", f"-j{os.cpu_count() or 1}"], log_path=log_path, env=env, cwd=src,
             timeout=3600)
    proc.run(["make", "install"], log_path=log_path, env=env, cwd=src, timeout=600)
