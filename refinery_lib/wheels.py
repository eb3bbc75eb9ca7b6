"""Reading wheels: file name, METADATA from the zip (nothing extracted), sha256; and the
checks an installer makes before a wheel is reused as it is (archives.py, with its caps)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from . import archives
from .errors import ArchiveError, InvalidWheelError
from .models import WheelRecord

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def parse_metadata(raw: bytes) -> dict[str, list[str]]:
    """Header fields of a METADATA/PKG-INFO file (all values per field, body ignored).

    Bytes from any source (a zip, an sdist, an index's PEP 658 file) are refused past
    METADATA_MAX_BYTES, before the parser spends time and memory on them."""
    if len(raw) > archives.METADATA_MAX_BYTES:
        raise InvalidWheelError(
            f"metadata of {archives.size_text(len(raw))}, over the cap of "
            f"{archives.size_text(archives.METADATA_MAX_BYTES)}"
        )
    msg = BytesHeaderParser().parsebytes(raw)
    fields: dict[str, list[str]] = {}
    for key, value in msg.items():
        fields.setdefault(key.lower(), []).append(str(value).strip())
    return fields


def _open_wheel(path: Path) -> zipfile.ZipFile:
    try:
        return archives.open_zip(path)
    except ArchiveError as exc:
        raise InvalidWheelError(str(exc)) from exc


def _metadata_fields(zf: zipfile.ZipFile) -> dict[str, list[str]]:
    """The one top-level `*.dist-info/METADATA`, read within METADATA_MAX_BYTES."""
    names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    if not names:
        raise InvalidWheelError("no *.dist-info/METADATA in the archive")
    if len(names) > 1:
        raise InvalidWheelError(f"several METADATA files: {', '.join(sorted(names))}")
    try:
        raw = archives.read_zip_member(zf, zf.getinfo(names[0]), archives.METADATA_MAX_BYTES)
    except ArchiveError as exc:
        raise InvalidWheelError(str(exc)) from exc
    fields = parse_metadata(raw)
    if not fields.get("name") or not fields.get("version"):
        raise InvalidWheelError("METADATA lacks Name or Version")
    return fields


def read_wheel_metadata(path: Path) -> dict[str, list[str]]:
    """METADATA of a wheel, read from its zip directory without extracting anything (and
    within METADATA_MAX_BYTES whatever the zip declares)."""
    with _open_wheel(path) as zf:
        return _metadata_fields(zf)


def _same_version(text: str, version: Version) -> bool:
    if text == str(version):
        return True
    try:
        return Version(text) == version
    except InvalidVersion:
        return False


def check_wheel(zf: zipfile.ZipFile, name: str, version: Version) -> dict[str, list[str]]:
    """METADATA of a wheel that passed every check an installer makes before placing it
    (entries, the one .dist-info, RECORD); InvalidWheelError names the first problem.

    The central directory is checked before anything is decompressed, METADATA next (its
    problems are the commonest), the contents last."""
    try:
        archives.check_wheel_entries(zf)
    except ArchiveError as exc:
        raise InvalidWheelError(str(exc)) from exc
    fields = _metadata_fields(zf)
    if canonicalize_name(fields["name"][0]) != name:
        raise InvalidWheelError(
            f"misnamed: file name says {name!r}, METADATA says {fields['name'][0]!r}"
        )
    if not _same_version(fields["version"][0], version):
        raise InvalidWheelError(
            f"misnamed: file name says version {version}, METADATA says {fields['version'][0]}"
        )
    try:
        dist_info = archives.check_dist_info(
            zf, lambda n, v: canonicalize_name(n) == name and _same_version(v, version)
        )
        archives.check_record(zf, dist_info)
    except ArchiveError as exc:
        raise InvalidWheelError(str(exc)) from exc
    return fields


SDIST_SUFFIXES = (".tar.gz", ".zip")


def scan_wheel(path: Path) -> WheelRecord:
    """Scan one input file; problems become an invalid record naming the reason. An sdist
    (`pip download` leaves them in wheelhouses) is scanned as one (`scan_sdist`)."""
    if path.name.endswith(SDIST_SUFFIXES):
        return scan_sdist(path)
    return _record(path, "wheel", _wheel_fields)


def scan_sdist(path: Path) -> WheelRecord:
    """An sdist of the input folder: name and version from its file name (PEP 625), which
    PKG-INFO must agree with; Requires-Dist as `read_sdist_metadata` finds it; every member
    walked within the caps (`archives.sdist_newest_mtime`) so a bad one is invalid here."""
    return _record(path, "sdist", _sdist_fields)


def _record(path: Path, kind: str, read: Callable[[Path], dict[str, Any]]) -> WheelRecord:
    """The scan record of `path`: `read`'s fields with its sha256 and size, or an invalid
    record with the reason `read` (or reading the file) gave."""
    def invalid(reason: str) -> WheelRecord:
        return WheelRecord(file=path.name, path=str(path), kind=kind, valid=False,
                           reason=reason)

    try:
        fields = read(path)
        size, sha = path.stat().st_size, sha256_file(path)
    except InvalidWheelError as exc:
        return invalid(str(exc))
    except OSError as exc:
        return invalid(f"cannot read: {exc}")
    return WheelRecord(file=path.name, path=str(path), kind=kind, valid=True, sha256=sha,
                       size=size, **fields)


def _requirements(meta: dict[str, list[str]]) -> dict[str, Any]:
    return {"requires_dist": tuple(meta.get("requires-dist", ())),
            "requires_python": (meta.get("requires-python") or [""])[0]}


def _wheel_fields(path: Path) -> dict[str, Any]:
    if not path.name.endswith(".whl"):
        raise InvalidWheelError("not a wheel or an sdist: the file name ends in neither "
                                ".whl nor " + " nor ".join(SDIST_SUFFIXES))
    try:
        name, version, build, tags = parse_wheel_filename(path.name)
    except (InvalidWheelFilename, ValueError) as exc:
        raise InvalidWheelError(f"bad wheel file name: {exc}") from exc
    with _open_wheel(path) as zf:
        meta = check_wheel(zf, name, version)
    return {"name": str(name), "version": str(version),
            "build_tag": "".join(str(p) for p in build) if build else "",
            "tags": tuple(sorted(str(t) for t in tags)), **_requirements(meta)}


def _sdist_fields(path: Path) -> dict[str, Any]:
    try:
        name, version = parse_sdist_filename(path.name)
    except (InvalidSdistFilename, ValueError) as exc:
        raise InvalidWheelError(f"bad sdist file name: {exc}") from exc
    try:
        archives.sdist_newest_mtime(path)
    except ArchiveError as exc:
        raise InvalidWheelError(f"sdist unsafe or damaged: {exc}") from exc
    meta = read_sdist_metadata(path)
    meta_name = (meta.get("name") or [""])[0]
    if canonicalize_name(meta_name) != name:
        raise InvalidWheelError(f"misnamed: file name says {name!r}, PKG-INFO says {meta_name!r}")
    meta_version = (meta.get("version") or [""])[0]
    if not _same_version(meta_version, version):
        raise InvalidWheelError(
            f"misnamed: file name says version {version}, PKG-INFO says {meta_version}")
    return {"name": str(name), "version": str(version), **_requirements(meta)}


def list_input_files(folder: Path) -> list[Path]:
    """Every regular file directly in `folder` (hidden files skipped), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


#: below this much input, one process scans faster than a pool starts
PARALLEL_SCAN_BYTES = 64 << 20


def scan_folder(folder: Path, workers: int | None = None) -> list[WheelRecord]:
    """Every input file scanned, in name order. Checking a wheel as an installer would
    decompresses all of it (about 0.4 s for numpy's 17 MB), so a large wheelhouse is scanned
    by a pool of processes: fresh interpreters (forkserver), since the scan may run in a
    thread of Snakemake's process, where a plain fork is unsafe."""
    paths = list_input_files(folder)
    workers = min(workers or os.cpu_count() or 1, len(paths), 8)
    total = sum(p.stat().st_size for p in paths)
    if workers < 2 or total < PARALLEL_SCAN_BYTES:
        return [scan_wheel(p) for p in paths]
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(scan_wheel, paths, chunksize=max(1, len(paths) // (workers * 8))))


_SDIST_MEMBERS = ("PKG-INFO", "pyproject.toml")


def _sdist_key(name: str) -> str | None:
    """Which wanted file an sdist member is: PKG-INFO or pyproject.toml at the top of the
    project folder, or its egg-info's requires.txt."""
    parts = name.split("/")
    if len(parts) == 2 and parts[1] in _SDIST_MEMBERS:
        return parts[1]
    if len(parts) == 3 and parts[1].endswith(".egg-info") and parts[2] == "requires.txt":
        return "requires.txt"
    return None


def sdist_members(path: Path) -> dict[str, bytes]:
    """PKG-INFO, pyproject.toml and egg-info/requires.txt of an sdist, nothing extracted;
    each within METADATA_MAX_BYTES, the walk within the sdist caps (archives.py)."""
    try:
        return archives.read_sdist_files(path, _sdist_key)
    except ArchiveError as exc:
        raise InvalidWheelError(f"sdist {path.name}: {exc}") from exc
    except OSError as exc:
        raise InvalidWheelError(f"sdist {path.name} unreadable: {exc}") from exc


def _requires_txt(text: str) -> list[str]:
    """setuptools' egg-info/requires.txt (sections are [extra], [:marker] or [extra:marker])."""
    out: list[str] = []
    marker = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            extra, _, cond = line[1:-1].partition(":")
            parts = [f"({cond})"] if cond else []
            if extra:
                parts.append(f'extra == "{extra}"')
            marker = " and ".join(parts)
            continue
        out.append(f"{line}; {marker}" if marker else line)
    return out


def read_sdist_metadata(path: Path) -> dict[str, list[str]]:
    """PKG-INFO of an sdist; Requires-Dist completed from static sources when PKG-INFO lacks it.

    Older setuptools leaves Requires-Dist out of PKG-INFO: then a static
    `[project].dependencies` in pyproject.toml, or egg-info/requires.txt, says the same.
    """
    import tomllib

    members = sdist_members(path)
    if "PKG-INFO" not in members:
        raise InvalidWheelError(f"sdist {path.name} has no PKG-INFO")
    fields = parse_metadata(members["PKG-INFO"])
    if fields.get("requires-dist"):
        return fields
    try:
        project = tomllib.loads(members.get("pyproject.toml", b"").decode()).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        project = {}
    if "dependencies" in project and "dependencies" not in project.get("dynamic", []):
        reqs = list(project["dependencies"])
        for extra, items in project.get("optional-dependencies", {}).items():
            reqs += [_with_extra(r, extra) for r in items]
        fields["requires-dist"] = reqs
    elif "requires.txt" in members:
        fields["requires-dist"] = _requires_txt(members["requires.txt"].decode("utf-8", "replace"))
    return fields


def _with_extra(req: str, extra: str) -> str:
    base, sep, marker = req.partition(";")
    cond = f'extra == "{extra}"'
    return f"{base.strip()}; ({marker.strip()}) and {cond}" if sep else f"{base.strip()}; {cond}"
