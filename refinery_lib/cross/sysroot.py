"""The target's Python for the cross builder: headers, sysconfig data, libraries, loader.

They come from the target-arch builder image (the Debian image the refinery bootstraps offline,
or `--container-image`), exported once per image id into the cache. The same image later runs
the smoke import under qemu, so the wheel is compiled against the Python that imports it.

Only what a cross build reads is kept: /usr/include, /usr/lib (the target's sysconfig data and
its libraries, for linking and for auditwheel's grafting), /lib*, and the interpreter (for a
meson exe_wrapper under qemu). Absolute symbolic links are rewritten to stay inside the root.
"""

from __future__ import annotations

import ast
import json
import os
import posixpath
import re
import shutil
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import proc
from ..container_images import image_id
from ..container_presets import oci_arch
from ..errors import BuildError, CommandError
from ..files import exclusive, inside, write_json

_KEEP = re.compile(
    r"^(usr/include/|usr/lib/|usr/lib64/|lib(32|64)?(/|$)|usr/bin/python3|var/lib/dpkg/info/.*\.list$)"
)
# packages whose headers zig brings for the glibc floor (and the Python headers, kept apart):
# a target library's headers are seen, the target's newer libc headers never are
_LIBC_PACKAGES = re.compile(r"^(libc6-dev|linux-libc-dev|libcrypt-dev|libpython3[.\d]*-dev|"
                            r"python3[.\d]*-dev|libnsl-dev|libtirpc-dev)(:\w+)?\.list$")
_SKIP = re.compile(r"^usr/lib/(python3[^/]*/(test|idlelib|tkinter|ensurepip)/|debug/|locale/)")
_SYSCONFIG = re.compile(r"^_sysconfigdata_.*\.py$")
# what the extracted tree may hold at most (a Debian builder image exports to about 1 GB)
MAX_EXPORT_BYTES = 8 << 30
MAX_MEMBERS = 400_000
#: what is kept of an export and how: a change makes new sysroot folders
LAYOUT = 4


@dataclass(frozen=True)
class TargetPython:
    """A target interpreter's build-time facts, read from its own files."""

    version: str  # "3.11"
    root: Path  # the extracted target filesystem
    include: Path  # holds python3.X/ and <multiarch>/python3.X/pyconfig.h (nothing else)
    sysconfig_dir: Path  # holds only the _sysconfigdata module
    sysconfig_name: str  # _sysconfigdata__s390x-linux-gnu
    multiarch: str  # s390x-linux-gnu
    ext_suffix: str  # .cpython-311-s390x-linux-gnu.so
    machine: str  # s390x
    image: str
    image_id: str
    #: the target's libraries as a build may see them: usr/include without the libc's own
    #: headers (zig's for the glibc floor come first), usr/lib the target's (for pkg-config's
    #: sysroot, meson's sys_root and -idirafter)
    libview: Path
    #: the interpreter's own compile flags (sysconfig CFLAGS: -O2 -g ... for Debian's), which
    #: setuptools replaces by a CFLAGS variable, so builds that set one start from these
    cflags: str = ""

    @property
    def include_flags(self) -> list[str]:
        return [f"-I{self.include / f'python{self.version}'}", f"-I{self.include}"]

    @property
    def library_flags(self) -> list[str]:
        """Target library headers after zig's libc headers; target library folders."""
        inc = self.libview / "usr" / "include"
        return [f"-idirafter{inc / self.multiarch}", f"-idirafter{inc}"]

    @property
    def link_flags(self) -> list[str]:
        return [f"-L{d}" for d in self.lib_dirs[:1]]

    @property
    def lib_dirs(self) -> list[Path]:
        """The target's library folders, for auditwheel's --ldpaths and the linker's -L."""
        dirs = [
            self.root / "usr" / "lib" / self.multiarch,
            self.root / "lib" / self.multiarch,
            self.root / "usr" / "lib",
        ]
        return [d for d in dirs if d.is_dir()]

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> TargetPython:
        paths = {"root", "include", "sysconfig_dir", "libview"}
        fields: dict[str, Any] = {k: Path(v) if k in paths else v for k, v in data.items()}
        return cls(**fields)


def target_python(
    engine: str, image: str, arch: str, python: str, root: Path, log_path: Path | None = None
) -> TargetPython:
    """The target Python of `image` (exported under `root` once per image id), checked
    against the target's Python version `python`."""
    ident = image_id(engine, image)
    folder = inside(root, f"sysroot-{arch}-{ident[:16]}-v{LAYOUT}")
    record = folder / "target-python.json"
    with exclusive(root / f".sysroot-{ident[:16]}.lock"):
        if not record.is_file():
            _export(engine, image, arch, folder, log_path)
            write_json(record, _describe(folder, image, ident).to_json())
    found = TargetPython.from_json(json.loads(record.read_text()))
    if found.version != python:
        raise BuildError(
            f"the target image {image} has Python {found.version}, the target is Python "
            f"{python}: use --python {found.version} or an image with Python {python} "
            "(--container-image)"
        )
    if found.machine != arch:
        raise BuildError(f"the target image {image} is for {found.machine}, not {arch}")
    return found


def _export(engine: str, image: str, arch: str, folder: Path, log_path: Path | None) -> None:
    """Export the image's filesystem and keep the parts a cross build reads."""
    shutil.rmtree(folder, ignore_errors=True)
    partial = folder.with_name(folder.name + f".partial-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    name = f"refinery-sysroot-{uuid.uuid4().hex[:12]}"
    tar_path = partial / "export.tar"
    try:
        proc.run([engine, "create", "--arch", oci_arch(arch), "--name", name, image, "true"],
                 log_path=log_path, timeout=300)
        try:
            proc.run([engine, "export", "--output", str(tar_path), name], log_path=log_path,
                     timeout=1800)
        finally:
            proc.run([engine, "rm", "--force", name], check=False, timeout=300)
        tree = partial / "tree"
        tree.mkdir()
        _extract(tar_path, tree)
        tar_path.unlink()
        os.replace(partial, folder)
    except CommandError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise BuildError(f"cannot export the target image {image}: {exc}", log_path) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _extract(tar_path: Path, dest: Path) -> None:
    """Extract the kept members, every one checked by tarfile's data filter; an absolute
    link is made relative to the root first (a sysroot's links point into itself)."""
    total = 0
    with tarfile.open(tar_path) as tf:
        for count, member in enumerate(tf, 1):
            if count > MAX_MEMBERS:
                raise BuildError(f"the exported image has over {MAX_MEMBERS} entries")
            name = member.name.lstrip("./")
            if not _KEEP.match(name) or _SKIP.match(name):
                continue
            if member.issym() and member.linkname.startswith("/"):
                target = member.linkname.lstrip("/")
                member.linkname = posixpath.relpath(target, posixpath.dirname(name) or ".")
            if member.isdev():
                continue
            total += member.size
            if total > MAX_EXPORT_BYTES:
                raise BuildError(f"the exported image is over {MAX_EXPORT_BYTES >> 30} GB")
            try:
                tf.extract(member, dest, filter="data")
            except tarfile.FilterError:
                continue  # a link leaving the root: nothing a build needs


def _describe(folder: Path, image: str, ident: str) -> TargetPython:
    """Find the interpreter's sysconfig data and headers in the extracted tree."""
    tree = folder / "tree"
    found = sorted(
        p for p in (tree / "usr" / "lib").glob("python3.*/_sysconfigdata_*.py")
        if _SYSCONFIG.match(p.name)
    )
    if not found:
        raise BuildError(f"the target image {image} has no Python sysconfig data "
                         "(/usr/lib/python3.X/_sysconfigdata_*.py): install python3-dev in it")
    source = found[0]
    build_vars = _read_build_vars(source)
    version = str(build_vars.get("VERSION", ""))
    multiarch = str(build_vars.get("MULTIARCH", ""))
    machine = multiarch.split("-", 1)[0] if multiarch else ""
    headers = tree / "usr" / "include" / f"python{version}"
    if not (headers / "Python.h").is_file():
        raise BuildError(f"the target image {image} has no Python.h for {version}: install "
                         "python3-dev (Debian) in it")
    include = folder / "include"
    shutil.copytree(headers, include / f"python{version}", symlinks=True, dirs_exist_ok=True)
    arch_conf = tree / "usr" / "include" / multiarch / f"python{version}"
    if arch_conf.is_dir():
        shutil.copytree(arch_conf, include / multiarch / f"python{version}", dirs_exist_ok=True)
    sysconfig_dir = folder / "sysconfig"
    sysconfig_dir.mkdir(exist_ok=True)
    shutil.copyfile(source, sysconfig_dir / source.name)
    libview = _library_view(tree, folder / "libview")
    return TargetPython(
        version=version,
        root=tree,
        include=include,
        sysconfig_dir=sysconfig_dir,
        sysconfig_name=source.stem,
        multiarch=multiarch,
        ext_suffix=str(build_vars.get("EXT_SUFFIX", "")),
        machine=machine,
        image=image,
        image_id=ident,
        libview=libview,
        cflags=" ".join(str(build_vars.get("CFLAGS", "")).split()),
    )


def _library_view(tree: Path, view: Path) -> Path:
    """`view/usr/include`: links to the target's headers but the libc's and Python's (dpkg's
    file lists say whose each is); `view/usr/lib`: the target's libraries."""
    libc: set[str] = set()
    info = tree / "var" / "lib" / "dpkg" / "info"
    for listing in info.glob("*.list") if info.is_dir() else ():
        if _LIBC_PACKAGES.match(listing.name):
            libc.update(line.strip().lstrip("/") for line in listing.read_text().splitlines())
    include = tree / "usr" / "include"
    shutil.rmtree(view, ignore_errors=True)
    (view / "usr").mkdir(parents=True)
    os.symlink(os.path.relpath(tree / "usr" / "lib", view / "usr"), view / "usr" / "lib")
    for dirpath, _dirs, files in os.walk(include):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(tree).as_posix()
            if rel in libc:
                continue
            link = view / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(path, link.parent), link)
    (view / "usr" / "include").mkdir(parents=True, exist_ok=True)
    return view


def _read_build_vars(path: Path) -> dict:
    """`build_time_vars` of a sysconfig data module, read as a literal (never executed: it
    comes from an image)."""
    tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "build_time_vars"):
            try:
                return ast.literal_eval(node.value)
            except ValueError as exc:
                raise BuildError(f"cannot read {path.name}: {exc}") from exc
    raise BuildError(f"{path.name} has no build_time_vars")
