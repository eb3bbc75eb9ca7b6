"""Reproducible builds: a source date from the sdist, a fixed source path, normalised wheels."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from .archives import sdist_newest_mtime, unpack_sdist
from .errors import ArchiveError, BuildError, SdistUnpackError
from .files import file_mode
from .logcap import lines_of

#: zip cannot store times before 1980
_ZIP_EPOCH = 315532800


def source_date_epoch(sdist: Path) -> int:
    """The newest member mtime of the sdist: fixed by the source, not by the clock. Every
    attempt of every builder asks first, so the sdist's caps and member checks hold before
    anything unpacks it (SdistUnpackError otherwise)."""
    try:
        newest = sdist_newest_mtime(sdist)
    except ArchiveError as exc:
        raise SdistUnpackError(f"cannot unpack sdist {sdist.name}: {exc}") from exc
    return max(newest, _ZIP_EPOCH)


def extract_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack into `dest` and return the project folder.

    Whole or not at all: an unsafe member, a corrupt or truncated archive, or a cap reached
    (archives.py) raises SdistUnpackError naming the sdist, and a `dest` this call created
    is removed, so that no build ever runs on a partial tree."""
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        unpack_sdist(sdist, dest)
    except ArchiveError as exc:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise SdistUnpackError(f"cannot unpack sdist {sdist.name}: {exc}") from exc
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise BuildError(f"sdist {sdist.name} should hold one top folder, found {len(tops)}")
    return tops[0]


def normalize_wheel(wheel: Path, epoch: int) -> None:
    """Rewrite a wheel with sorted entries, fixed timestamps and permissions (content as is).

    RECORD lists content hashes only, so it stays valid; dist-info files go last as PEP 427
    recommends.
    """
    stamp = time.gmtime(max(epoch, _ZIP_EPOCH))[:6]
    with zipfile.ZipFile(wheel) as src:
        infos = src.infolist()
        entries = [(i, src.read(i)) for i in infos if not i.is_dir()]

    def order(item):
        name = item[0].filename
        top = name.split("/", 1)[0]
        is_dist = top.endswith(".dist-info")
        return (is_dist, name.endswith("/RECORD") if is_dist else False, name)

    entries.sort(key=order)
    fd, tmp = tempfile.mkstemp(dir=wheel.parent, prefix=f".{wheel.name}.")
    os.fchmod(fd, file_mode())  # cache files are copied to the output, modes and all
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for info, data in entries:
                new = zipfile.ZipInfo(info.filename, date_time=stamp)
                executable = (info.external_attr >> 16) & 0o111
                new.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
                new.compress_type = zipfile.ZIP_DEFLATED
                new.create_system = 3
                dst.writestr(new, data, compresslevel=6)
        os.replace(tmp, wheel)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_PINNED = re.compile(r"^\s+- ([A-Za-z0-9._-]+)==([^\s;]+)\s*$")


def installed_build_deps(log: Path | str) -> dict[str, str]:
    """Build dependencies of the isolated environment, from `build`'s own report in the log.

    `python -m build` prints "* Installed build dependency versions:" followed by
    "  - name==version" lines, once per environment it sets up. `log` is the log file (read
    line by line, `logcap.lines_of`: never whole) or its text.
    """
    deps: dict[str, str] = {}
    in_block = False
    for line in lines_of(log):
        if line.startswith("* Installed build dependency versions"):
            in_block = True
            continue
        if in_block:
            m = _PINNED.match(line)
            if m:
                deps[m.group(1).lower()] = m.group(2)
            else:
                in_block = False
    return deps
