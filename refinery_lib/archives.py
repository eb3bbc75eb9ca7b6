"""Untrusted archives, read the way an installer reads them, and never without a cap.

Input wheels are republished as they are, so before reuse every entry is checked as an
installer would check it: a safe relative path, a regular file or folder, listed once, listed
in RECORD with a matching hash and size, one `.dist-info` named after the wheel. Every read
is bounded: the central directory, each small text file (METADATA, RECORD, PKG-INFO), the
sum of what an archive unpacks to, its member count, and how much it expands. sdists are
unpacked here too, member by member, with the same kind of caps and every byte counted.

The caps live in this module only (named constants); a problem is an `ArchiveError` whose
message names the entry, and each caller turns it into its own outcome.
"""

from __future__ import annotations

import base64
import hashlib
import lzma
import os
import posixpath
import re
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from installer.records import InvalidRecordEntry, RecordEntry, parse_record_file

from .errors import ArchiveError

MiB = 1 << 20
GiB = 1 << 30

#: METADATA, PKG-INFO, pyproject.toml, requires.txt: header files a few KiB long in practice
METADATA_MAX_BYTES = 16 * MiB
#: RECORD has a line per file: 200,000 files with long paths stay under this
RECORD_MAX_BYTES = 64 * MiB
#: what a wheel may unpack to, and how many entries it may hold: generous, they stop bombs
#: and not large wheels
WHEEL_MAX_BYTES = 8 * GiB
WHEEL_MAX_MEMBERS = 200_000
#: zipfile parses a zip's central directory whole, into some 8 times its size in memory: its
#: size is read first, from the end record
ZIP_DIRECTORY_MAX_BYTES = 64 * MiB
#: what an sdist may unpack to on disk, and how many members it may hold
SDIST_MAX_BYTES = 4 * GiB
SDIST_MAX_MEMBERS = 200_000
#: source and binaries compress 2-10 times; past this ratio a wheel entry, or an sdist as a
#: whole, is a decompression bomb, once it unpacks to more than RATIO_FLOOR (below that the
#: size caps bound the cost)
MAX_RATIO = 200
RATIO_FLOOR = 64 * MiB
#: tar pads its end marker to a record (10 KiB by default); more after it is not padding
TAR_TRAILER_MAX_BYTES = 1 * MiB

_CHUNK = 1 * MiB
#: zipfile bounds each deflate step by the bytes asked for; bzip2 and lzma steps are not
#: bounded (a few KiB of bzip2 can unpack to GiBs in one call), so only these are read
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
#: what a damaged archive raises while it is read, besides ArchiveError
_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
)
#: signature files are the one thing RECORD cannot list (they sign it)
_SIGNATURES = ("RECORD.jws", "RECORD.p7s")
_DRIVE = re.compile(r"^[A-Za-z]:")


def size_text(n: int) -> str:
    """A byte count for a message: 16 MiB, 8 GiB, 1.5 GiB, 512 bytes."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def read_capped(stream: IO[bytes], cap: int, what: str) -> bytes:
    """All of `stream` if it holds at most `cap` bytes, read in chunks: the read stops one
    byte past the cap, whatever a header declared, so a bomb costs `cap` and no more."""
    chunks: list[bytes] = []
    total = 0
    while total <= cap:
        chunk = stream.read(min(_CHUNK, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    raise ArchiveError(f"{what} is larger than the cap of {size_text(cap)}")


# -- zip -------------------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")


def _central_directory_size(fh: BinaryIO) -> int | None:
    """The central directory's size from the zip's end records, or None if they cannot be
    found (zipfile then says what is wrong)."""
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    start = max(0, end - _EOCD.size - 0xFFFF)
    fh.seek(start)
    tail = fh.read(end - start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return None
    size = _EOCD.unpack_from(tail, at)[5]
    if size != 0xFFFFFFFF or at < _EOCD64_LOCATOR.size:
        return size
    sig, _, offset, _ = _EOCD64_LOCATOR.unpack_from(tail, at - _EOCD64_LOCATOR.size)
    if sig != b"PK\x06\x07" or offset + _EOCD64.size > end:
        return None
    fh.seek(offset)
    record = fh.read(_EOCD64.size)
    if len(record) < _EOCD64.size or record[:4] != b"PK\x06\x06":
        return None
    return _EOCD64.unpack(record)[8]


def open_zip(path: Path) -> zipfile.ZipFile:
    """The zip at `path`, once its central directory is known to be of a sane size."""
    try:
        with open(path, "rb") as fh:
            directory = _central_directory_size(fh)
        if directory is not None and directory > ZIP_DIRECTORY_MAX_BYTES:
            raise ArchiveError(
                f"zip directory of {size_text(directory)}, over the cap of "
                f"{size_text(ZIP_DIRECTORY_MAX_BYTES)}"
            )
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"not a zip archive ({exc})") from exc
    except (OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"cannot read: {exc}") from exc


def _readable(info: zipfile.ZipInfo) -> None:
    """ArchiveError unless zipfile can stream this entry with bounded steps."""
    if info.flag_bits & 0x1:
        raise ArchiveError(f"encrypted entry {info.filename}")
    if info.compress_type not in _ZIP_METHODS:
        raise ArchiveError(
            f"entry {info.filename} uses compression method {info.compress_type}; "
            f"only {' and '.join(_ZIP_METHODS.values())} are read"
        )


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """One entry, at most `cap` bytes: refused on its declared size, and the read itself
    stops at the cap in case the declaration lies."""
    _readable(info)
    if info.file_size > cap:
        raise ArchiveError(
            f"{info.filename} is {size_text(info.file_size)}, over the cap of {size_text(cap)}"
        )
    try:
        with zf.open(info) as stream:
            return read_capped(stream, cap, info.filename)
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise ArchiveError(f"entry {info.filename} is corrupt ({exc})") from exc


# -- wheels ----------------------------------------------------------------------------------


def entry_problem(name: str) -> str | None:
    """Why an installer must refuse an entry of this name (None: it may be placed)."""
    if "\\" in name:
        return f"unsafe entry {name!r}: backslash in the path"
    if name.startswith("/"):
        return f"unsafe entry {name!r}: absolute path"
    if _DRIVE.match(name):
        return f"unsafe entry {name!r}: drive letter"
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return f"unsafe entry {name!r}: path leaves the wheel"
        elif part not in ("", "."):
            depth += 1
    if ".." in name.split("/"):
        return f"unsafe entry {name!r}: '..' in the path"
    return None


def _kind_problem(info: zipfile.ZipInfo) -> str | None:
    """A symlink or a special file (device, fifo, socket) in the unix mode bits."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        return f"symlink entry {info.filename}"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"special file entry {info.filename} (mode {oct(mode)})"
    return None


def _ratio_problem(info: zipfile.ZipInfo) -> str | None:
    if info.file_size <= RATIO_FLOOR:
        return None
    if info.file_size <= MAX_RATIO * max(info.compress_size, 1):
        return None
    ratio = info.file_size // max(info.compress_size, 1)
    return (
        f"entry {info.filename} expands {ratio} times ({size_text(info.file_size)} from "
        f"{size_text(info.compress_size)}): a decompression bomb"
    )


def check_wheel_entries(zf: zipfile.ZipFile) -> None:
    """What the central directory alone says: count and size caps, then per entry a safe
    name, a file or folder, stored or deflated, not encrypted, not a bomb, listed once."""
    infos = zf.infolist()
    if len(infos) > WHEEL_MAX_MEMBERS:
        raise ArchiveError(f"too many entries: {len(infos)}, the cap is {WHEEL_MAX_MEMBERS}")
    total = sum(i.file_size for i in infos)
    if total > WHEEL_MAX_BYTES:
        raise ArchiveError(
            f"unpacks to {size_text(total)}, over the cap of {size_text(WHEEL_MAX_BYTES)}"
        )
    for info in infos:
        problem = entry_problem(info.filename) or _kind_problem(info) or _ratio_problem(info)
        if problem:
            raise ArchiveError(problem)
        if not info.is_dir():
            _readable(info)
    seen = Counter(posixpath.normpath(i.filename) for i in infos)
    for info in infos:
        if seen[posixpath.normpath(info.filename)] > 1:
            raise ArchiveError(f"duplicate entry {info.filename}")


def check_dist_info(zf: zipfile.ZipFile, same_project: Callable[[str, str], bool]) -> str:
    """The one `.dist-info` folder, which must be the wheel's own: `same_project(name,
    version)` says whether the folder's name and version are the file name's."""
    tops = {n.split("/", 1)[0] for n in zf.namelist() if "/" in n}
    found = sorted(t for t in tops if t.endswith(".dist-info"))
    if len(found) != 1:
        listed = f": {', '.join(found)}" if found else ""
        raise ArchiveError(f"{len(found)} .dist-info folders, a wheel has one{listed}")
    name, _, version = found[0].removesuffix(".dist-info").rpartition("-")
    if not name or not same_project(name, version):
        raise ArchiveError(f"{found[0]} does not match the wheel's name and version")
    return found[0]


def _record_rows(zf: zipfile.ZipFile, dist_info: str) -> dict[str, tuple[str, str, str]]:
    """RECORD's rows by path, parsed as the `installer` library parses them."""
    try:
        info = zf.getinfo(f"{dist_info}/RECORD")
    except KeyError:
        raise ArchiveError(f"no RECORD in {dist_info}") from None
    try:
        text = read_zip_member(zf, info, RECORD_MAX_BYTES).decode("utf-8")
        return {row[0]: row for row in parse_record_file(text.splitlines())}
    except UnicodeDecodeError as exc:
        raise ArchiveError(f"RECORD is not UTF-8 ({exc.reason})") from exc
    except InvalidRecordEntry as exc:
        raise ArchiveError(f"RECORD is malformed: {exc}") from exc


def _record_entry(info: zipfile.ZipInfo, row: tuple[str, str, str]) -> RecordEntry:
    try:
        return RecordEntry.from_elements(*row)
    except InvalidRecordEntry as exc:
        raise ArchiveError(f"RECORD row for {info.filename} is invalid: {exc}") from exc


def _digest(zf: zipfile.ZipFile, info: zipfile.ZipInfo, algorithm: str) -> str:
    """RECORD's form of an entry's hash (urlsafe base64, unpadded), streamed in chunks."""
    try:
        digest = hashlib.new(algorithm)
        with zf.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        raw = digest.digest()
    except (TypeError, ValueError) as exc:
        raise ArchiveError(f"RECORD hash {algorithm} of {info.filename} is unusable") from exc
    except _READ_ERRORS as exc:
        raise ArchiveError(f"entry {info.filename} is corrupt ({exc})") from exc
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def check_record(zf: zipfile.ZipFile, dist_info: str) -> None:
    """RECORD as an installer checks it, and stricter: every file listed with a hash and a
    size, every row a file of the wheel, every hash and size right. The listing is compared
    first, the contents streamed last (the costly part, bounded by the entry caps)."""
    rows = _record_rows(zf, dist_info)
    record_path = f"{dist_info}/RECORD"
    to_hash: list[tuple[zipfile.ZipInfo, RecordEntry]] = []
    for info in zf.infolist():
        if info.is_dir():
            continue
        row = rows.pop(info.filename, None)
        if posixpath.dirname(info.filename) == dist_info and info.filename.endswith(
            tuple(f"/{s}" for s in _SIGNATURES)
        ):
            if row is not None:
                raise ArchiveError(f"RECORD lists its own signature {info.filename}")
            continue
        if row is None:
            raise ArchiveError(f"{info.filename} is not listed in RECORD")
        entry = _record_entry(info, row)
        if info.filename == record_path:
            if entry.hash_ is not None or entry.size is not None:
                raise ArchiveError("RECORD lists a hash or size for itself")
            continue
        if entry.hash_ is None or entry.size is None:
            raise ArchiveError(f"RECORD has no hash or size for {info.filename}")
        if entry.size != info.file_size:
            raise ArchiveError(
                f"RECORD size mismatch for {info.filename}: RECORD says {entry.size} bytes, "
                f"the wheel holds {info.file_size}"
            )
        to_hash.append((info, entry))
    missing = sorted(path for path in rows if not path.endswith("/"))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ArchiveError(f"RECORD lists {missing[0]}, which is not in the wheel{more}")
    for info, entry in to_hash:
        assert entry.hash_ is not None
        if _digest(zf, info, entry.hash_.name) != entry.hash_.value:
            raise ArchiveError(f"RECORD hash mismatch for {info.filename}")


# -- sdists ----------------------------------------------------------------------------------


@dataclass
class _Budget:
    """Running totals of one walk over an sdist, against the sdist caps: each member is
    counted on its declared size before any of its bytes are read or written."""

    archive_size: int
    members: int = 0
    declared: int = 0

    def add(self, name: str, size: int) -> None:
        self.members += 1
        if self.members > SDIST_MAX_MEMBERS:
            raise ArchiveError(f"more than {SDIST_MAX_MEMBERS} members (the cap)")
        self.declared += max(size, 0)
        if self.declared > SDIST_MAX_BYTES:
            raise ArchiveError(
                f"unpacks to more than the cap of {size_text(SDIST_MAX_BYTES)} "
                f"(reached at member {name!r})"
            )
        if self.declared > RATIO_FLOOR and self.declared > MAX_RATIO * self.archive_size:
            raise ArchiveError(
                f"expands more than {MAX_RATIO} times ({size_text(self.declared)} from "
                f"{size_text(self.archive_size)}, at member {name!r}): a decompression bomb"
            )


def _damage(exc: BaseException) -> ArchiveError:
    """One line for what the archive modules raised: a filesystem error (it has an errno)
    is this host's, anything else is damage in the archive."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.errno is not None:
        return ArchiveError(f"cannot write the tree ({text})")
    return ArchiveError(f"damaged archive ({text})")


def _is_zip_sdist(path: Path) -> bool:
    return path.name.endswith(".zip")


def _check_tar_end(tf: tarfile.TarFile, last: str) -> None:
    """tarfile ends its walk quietly at a header it cannot parse (past the first member),
    which would leave a partial tree: what follows the last member must be tar's zero end
    blocks, read to the end so that the compressor checks its own CRC and length."""
    assert tf.fileobj is not None
    tf.fileobj.seek(tf.offset)
    seen = 0
    while chunk := tf.fileobj.read(min(_CHUNK, TAR_TRAILER_MAX_BYTES + 1 - seen)):
        if chunk.count(0) != len(chunk):
            after = f" after member {last!r}" if last else ""
            raise ArchiveError(f"corrupt tar header at byte {tf.offset}{after}")
        seen += len(chunk)
        if seen > TAR_TRAILER_MAX_BYTES:
            raise ArchiveError(
                f"more than {size_text(TAR_TRAILER_MAX_BYTES)} of padding after the last member"
            )


def _tar_members(tf: tarfile.TarFile, budget: _Budget) -> Iterator[tarfile.TarInfo]:
    """Every member, each counted against the budget, then a check that the walk reached
    the archive's real end."""
    last = ""
    for member in tf:
        budget.add(member.name, member.size if member.isreg() else 0)
        yield member
        last = member.name
    _check_tar_end(tf, last)


def read_sdist_files(path: Path, pick: Callable[[str], str | None]) -> dict[str, bytes]:
    """The regular members `pick` gives a key to (the first of each key), each at most
    METADATA_MAX_BYTES, nothing extracted; the whole walk is within the sdist caps."""
    budget = _Budget(path.stat().st_size)
    found: dict[str, bytes] = {}
    try:
        if _is_zip_sdist(path):
            with open_zip(path) as zf:
                for info in zf.infolist():
                    budget.add(info.filename, info.file_size)
                    key = pick(info.filename)
                    if key and key not in found and not info.is_dir():
                        found[key] = read_zip_member(zf, info, METADATA_MAX_BYTES)
            return found
        with tarfile.open(path) as tf:
            for member in _tar_members(tf, budget):
                key = pick(member.name)
                if not key or key in found or not member.isfile():
                    continue
                if member.size > METADATA_MAX_BYTES:
                    raise ArchiveError(
                        f"{member.name} is {size_text(member.size)}, over the cap of "
                        f"{size_text(METADATA_MAX_BYTES)}"
                    )
                stream = tf.extractfile(member)
                found[key] = read_capped(stream, METADATA_MAX_BYTES, member.name) if stream else b""
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise _damage(exc) from exc
    return found


def sdist_newest_mtime(path: Path) -> int:
    """The newest member time of an sdist, from a walk of every header within the sdist caps
    and through tar's `data` filter: run on this host before any builder unpacks it (a
    container unpacks with the standard library only, so the checks happen here)."""
    budget = _Budget(path.stat().st_size)
    newest = 0
    try:
        if _is_zip_sdist(path):
            with open_zip(path) as zf:
                for info in zf.infolist():
                    budget.add(info.filename, info.file_size)
                    if problem := entry_problem(info.filename):
                        raise ArchiveError(f"unsafe member {info.filename!r}: {problem}")
                    newest = max(newest, int(time.mktime((*info.date_time, 0, 0, -1))))
            return newest
        root = "/nonexistent-sdist-root"  # the filter's view: nothing there to resolve
        with tarfile.open(path) as tf:
            for member in _tar_members(tf, budget):
                _filtered(member, root)
                newest = max(newest, int(member.mtime))
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise _damage(exc) from exc
    return newest


def _filtered(member: tarfile.TarInfo, root: str) -> tarfile.TarInfo:
    """`member` as tar's `data` filter lets it through into `root`, or ArchiveError."""
    try:
        return tarfile.data_filter(member, root)
    except tarfile.FilterError as exc:
        raise ArchiveError(f"unsafe member {member.name!r}: {exc}") from exc


def _clear(target: str) -> None:
    """Make room for a member: a later member replaces an earlier file or link of the same
    name, as tar does; the old entry is removed, never followed."""
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)


def _write_file(src: IO[bytes], target: str, declared: int, name: str) -> None:
    """Copy a member in chunks, counting the bytes actually written against its declared
    size: headers can lie (sparse or corrupt members), the count cannot."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    _clear(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    written = 0
    with os.fdopen(os.open(target, flags, 0o666), "wb") as out:
        while chunk := src.read(min(_CHUNK, declared + 1 - written)):
            written += len(chunk)
            if written > declared:
                raise ArchiveError(f"member {name!r} holds more than its declared {declared} bytes")
            out.write(chunk)
    if written != declared:
        raise ArchiveError(f"member {name!r} is truncated: {written} of {declared} bytes")


def _extract_tar(path: Path, root: str) -> None:
    budget = _Budget(path.stat().st_size)
    with tarfile.open(path) as tf:
        for member in _tar_members(tf, budget):
            member = _filtered(member, root)
            target = os.path.join(root, member.name)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
            elif member.isreg():
                stream = tf.extractfile(member)
                assert stream is not None
                with stream:
                    _write_file(stream, target, member.size, member.name)
                if member.mode is not None:
                    os.chmod(target, member.mode)
                os.utime(target, (member.mtime, member.mtime))
            elif member.issym() or member.islnk():
                os.makedirs(os.path.dirname(target), exist_ok=True)
                _clear(target)
                if member.issym():
                    os.symlink(member.linkname, target)
                else:
                    os.link(os.path.join(root, member.linkname), target, follow_symlinks=False)
            else:
                raise ArchiveError(f"member {member.name!r} is not a file, folder or link")


def _extract_zip(path: Path, root: str) -> None:
    budget = _Budget(path.stat().st_size)
    with open_zip(path) as zf:
        for info in zf.infolist():
            budget.add(info.filename, info.file_size)
            target = os.path.realpath(os.path.join(root, info.filename))
            if info.filename.startswith("/") or os.path.commonpath([target, root]) != root:
                raise ArchiveError(f"unsafe member {info.filename!r}: path leaves the folder")
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            _readable(info)
            with zf.open(info) as stream:
                _write_file(stream, target, info.file_size, info.filename)


def unpack_sdist(path: Path, dest: Path) -> None:
    """Unpack an sdist (tar of any compression, or zip) into `dest`, whole or not at all:
    any unsafe member, damage, or cap reached raises ArchiveError, and the caller removes
    what was written. Tar members pass tarfile's `data` filter first."""
    root = os.path.realpath(dest)
    try:
        if _is_zip_sdist(path):
            _extract_zip(path, root)
        else:
            _extract_tar(path, root)
    except ArchiveError:
        raise
    except _READ_ERRORS as exc:
        raise _damage(exc) from exc
