"""Reading wheels: file name, METADATA from the zip (nothing extracted), sha256."""

from __future__ import annotations

import hashlib
import zipfile
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)

from .errors import InvalidWheelError
from .models import WheelRecord

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def parse_metadata(raw: bytes) -> dict[str, list[str]]:
    """Header fields of a METADATA/PKG-INFO file (all values per field, body ignored)."""
    msg = BytesHeaderParser().parsebytes(raw)
    fields: dict[str, list[str]] = {}
    for key, value in msg.items():
        fields.setdefault(key.lower(), []).append(str(value).strip())
    return fields


def read_wheel_metadata(path: Path) -> dict[str, list[str]]:
    """METADATA of a wheel, read from its zip directory without extracting anything."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise InvalidWheelError(f"not a zip archive ({exc})") from exc
    except OSError as exc:
        raise InvalidWheelError(f"cannot read: {exc}") from exc
    with zf:
        names = [
            n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
        ]
        if not names:
            raise InvalidWheelError("no *.dist-info/METADATA in the archive")
        if len(names) > 1:
            raise InvalidWheelError(f"several METADATA files: {', '.join(sorted(names))}")
        try:
            raw = zf.read(names[0])
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise InvalidWheelError(f"METADATA unreadable, archive truncated? ({exc})") from exc
    fields = parse_metadata(raw)
    if not fields.get("name") or not fields.get("version"):
        raise InvalidWheelError("METADATA lacks Name or Version")
    return fields


def scan_wheel(path: Path) -> WheelRecord:
    """Scan one input file; problems become an invalid record naming the reason."""
    base = {"file": path.name, "path": str(path)}
    try:
        size = path.stat().st_size
        if not path.name.endswith(".whl"):
            raise InvalidWheelError("not a wheel: file name does not end in .whl")
        try:
            name, version, build, tags = parse_wheel_filename(path.name)
        except (InvalidWheelFilename, ValueError) as exc:
            raise InvalidWheelError(f"bad wheel file name: {exc}") from exc
        fields = read_wheel_metadata(path)
        meta_name = canonicalize_name(fields["name"][0])
        if meta_name != name:
            raise InvalidWheelError(
                f"misnamed: file name says {name!r}, METADATA says {fields['name'][0]!r}"
            )
        if fields["version"][0] != str(version):
            from packaging.version import InvalidVersion, Version

            try:
                same = Version(fields["version"][0]) == version
            except InvalidVersion:
                same = False
            if not same:
                raise InvalidWheelError(
                    f"misnamed: file name says version {version}, "
                    f"METADATA says {fields['version'][0]}"
                )
        sha = sha256_file(path)
    except InvalidWheelError as exc:
        return WheelRecord(**base, valid=False, reason=str(exc))
    except OSError as exc:
        return WheelRecord(**base, valid=False, reason=f"cannot read: {exc}")
    return WheelRecord(
        **base,
        valid=True,
        name=str(name),
        version=str(version),
        build_tag="".join(str(p) for p in build) if build else "",
        tags=tuple(sorted(str(t) for t in tags)),
        requires_dist=tuple(fields.get("requires-dist", ())),
        requires_python=(fields.get("requires-python") or [""])[0],
        sha256=sha,
        size=size,
    )


def list_input_files(folder: Path) -> list[Path]:
    """Every regular file directly in `folder` (hidden files skipped), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def scan_folder(folder: Path) -> list[WheelRecord]:
    return [scan_wheel(p) for p in list_input_files(folder)]


_SDIST_MEMBERS = ("PKG-INFO", "pyproject.toml")


def sdist_members(path: Path) -> dict[str, bytes]:
    """PKG-INFO, pyproject.toml and egg-info/requires.txt of an sdist, nothing extracted."""
    import tarfile

    def wanted(name: str) -> str | None:
        parts = name.split("/")
        if len(parts) == 2 and parts[1] in _SDIST_MEMBERS:
            return parts[1]
        if len(parts) == 3 and parts[1].endswith(".egg-info") and parts[2] == "requires.txt":
            return "requires.txt"
        return None

    found: dict[str, bytes] = {}
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    if (key := wanted(name)) and key not in found:
                        found[key] = zf.read(name)
        else:
            with tarfile.open(path) as tf:
                for member in tf:
                    key = wanted(member.name)
                    if key and key not in found and member.isfile():
                        fh = tf.extractfile(member)
                        found[key] = fh.read() if fh else b""
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidWheelError(f"sdist {path.name} unreadable: {exc}") from exc
    return found


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
