"""Small file helpers: atomic writes and copies, JSON records, folder confinement, the lock
between processes."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import UnsafeNameError


def inside(folder: Path, name: str) -> Path:
    """`folder/name`, refused if it would resolve outside `folder`."""
    base = folder.resolve()
    target = (base / name).resolve()
    if target.parent != base and base not in target.parents:
        raise UnsafeNameError(f"{name!r} escapes {folder}")
    return target


def lock_file(lock_path: Path, *, wait: bool = True) -> IO[str] | None:
    """`lock_path` (made with its folder) opened and locked with an exclusive flock, the one
    lock of the refinery between processes: the kernel drops it when the file is closed, or
    when the last process holding it (a child that inherited it too) ends, even by SIGKILL.
    wait=False: None at once when another process holds it. Keep the file open while the
    lock is needed."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a")  # noqa: SIM115 - returned open: the lock lives with it
    try:
        fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    except BaseException:
        fh.close()
        raise
    return fh


@contextlib.contextmanager
def exclusive(lock_path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive flock on `lock_path` (see lock_file) for the block, released at its end
    (also for processes that inherited the file); yields True when held, and False at once
    when wait=False and another process holds it."""
    fh = lock_file(lock_path, wait=wait)
    if fh is None:
        yield False
        return
    with fh:
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@functools.cache
def umask() -> int:
    """This process's umask, read without changing it (os.umask sets it too, which is unsafe
    while other threads create files: Snakemake runs light jobs as threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a plain `open()` would give a new file: 0644 under the usual umask.
    Temporary files (mkstemp) are 0600, and an output that keeps that is unreadable to the
    other users of a served index."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def atomic_write_text(path: Path | str, text: str, mode: int | None = None) -> None:
    """Write `path` whole or not at all; its mode is `mode`, else what the umask gives (pass
    0o600 for a file holding credentials)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, file_mode() if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path | str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def atomic_copy(src: Path, dest: Path, link: bool = False) -> Path:
    """Copy `src` to `dest` via a temporary file, so readers never see half a wheel.

    `link`: a hard link instead where the file system allows, for files the refinery owns
    and only ever replaces by rename (its download and wheel caches). Never for the user's
    input: a wheel rewritten in place there (`cp` over it keeps the inode) would change the
    output behind the manifest's back."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(dest.parent / f".{dest.name}.{os.getpid()}.tmp")
    try:
        try:
            if not link:
                raise OSError("copy asked for")
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            os.chmod(tmp, file_mode())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def place_wheel(src: Path, folder: Path, sha256: str | None = None, link: bool = False) -> Path:
    """Put a wheel in `folder` unless an identical file is already there (see atomic_copy)."""
    from .wheels import sha256_file

    dest = inside(folder, src.name)
    if dest.exists() and dest.stat().st_size == src.stat().st_size:
        if sha256_file(dest) == (sha256 or sha256_file(src)):
            return dest
    return atomic_copy(src, dest, link)


def write_tree(folder: Path, files: dict[str, str]) -> None:
    """Replace `folder` by exactly `files` (relative path -> text), written into a fresh
    sibling folder and swapped in: one rename for the set, not a temporary file per file."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        made: set[Path] = set()
        for rel, text in files.items():
            path = inside(fresh, rel)
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        os.chmod(fresh, dir_mode())
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
            os.replace(folder, old / folder.name)
        os.replace(fresh, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
