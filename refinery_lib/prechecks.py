"""Checks before a run starts: each mistake they catch would otherwise surface late, as a run
that did nothing, failed everything, or broke the next one. They read and probe, and leave
nothing behind: no folder is created, no file is kept (a write probe is removed at once).

Every check raises PrecheckError (a ConfigError: `refinery` exits 2) with one line naming the
option (or the environment variable, or config key) the value came from.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .targets import check_platform_tag, check_python


class PrecheckError(ConfigError):
    """A run was refused before it started; nothing was written."""


#: how each path is named in messages unless the caller knows better (an env variable)
PATH_FLAGS = {
    "input": "--input",
    "output": "--output",
    "cache": "--cache",
    "manifest": "--manifest",
    "history_db": "--history-db",
}


@dataclass(frozen=True)
class RunPaths:
    """The folders and files a run reads and writes, resolved (links followed)."""

    input: Path
    output: Path
    cache: Path
    manifest: Path
    history_db: Path

    @classmethod
    def of(cls, paths: Any) -> RunPaths:
        """From settings.Paths (or anything with these attributes)."""
        return cls(*(Path(getattr(paths, k)).expanduser().resolve() for k in PATH_FLAGS))


def _label(labels: Mapping[str, str], name: str) -> str:
    return labels.get(name, PATH_FLAGS.get(name, name))


def check_target(conf: dict[str, Any], labels: Mapping[str, str]) -> None:
    """--python readable by packaging (normalised in place: 'v3.12' -> '3.12') and a
    platform tag of a known arch, before the schema reports either as a failed pattern."""
    target = conf.get("target")
    if not isinstance(target, dict):
        return
    if isinstance(target.get("python"), str):
        target["python"] = check_python(target["python"], labels.get("python", "--python"))
    if isinstance(target.get("platform_tag"), str):
        check_platform_tag(target["platform_tag"], labels.get("platform_tag", "--platform-tag"))


def check_input(folder: Path, label: str = "--input") -> None:
    """A readable folder with at least one file to refine: an empty one would be a run that
    checks nothing and says ok."""
    from .wheels import list_input_files

    if not folder.is_dir():
        raise PrecheckError(f"{label} {folder} is not a folder")
    try:
        next(os.scandir(folder), None)
    except OSError as exc:
        raise PrecheckError(f"{label} {folder} cannot be read: {exc.strerror}") from None
    if not list_input_files(folder):
        raise PrecheckError(
            f"{label} {folder} holds no files to refine (it is empty, or holds only hidden "
            "files and folders)"
        )


def _overlap(paths: RunPaths, a: str, b: str, labels: Mapping[str, str]) -> str | None:
    """How two of the folders overlap, said with their options, or None."""
    pa, pb = getattr(paths, a), getattr(paths, b)
    if pa == pb:
        return f"{_label(labels, a)} and {_label(labels, b)} are the same folder {pa}"
    if pb in pa.parents:
        return f"{_label(labels, a)} {pa} is inside {_label(labels, b)} {pb}"
    if pa in pb.parents:
        return f"{_label(labels, b)} {pb} is inside {_label(labels, a)} {pa}"
    return None


def check_separate(paths: RunPaths, labels: Mapping[str, str] = PATH_FLAGS) -> None:
    """Input, output and cache are three separate folders, none inside another: an output in
    the input is read as input by the next run, an input in the output is overwritten by it,
    a cache in the output publishes the run's config (index credentials) and logs, and an
    input that is the cache is scanned with the history database in it. Nor may the manifest
    or the history database be written into the input."""
    folders = ("input", "output", "cache")
    for i, a in enumerate(folders):
        for b in folders[i + 1:]:
            problem = _overlap(paths, a, b, labels)
            if problem:
                raise PrecheckError(
                    f"{problem}: input, output and cache must be separate folders, none "
                    "inside another"
                )
    for name in ("manifest", "history_db"):
        path = getattr(paths, name)
        if paths.input in path.parents:
            raise PrecheckError(
                f"{_label(labels, name)} {path} is inside {_label(labels, 'input')} "
                f"{paths.input}: the next run would read it as an input"
            )


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_writable(folder: Path, label: str) -> None:
    """`folder` can be written, or made where it is missing: a real probe (a temporary file
    created and removed in it, or in its nearest existing parent), since permission bits
    tell nothing of read-only mounts, ACLs, quotas or a root that ignores them."""
    where = _existing_ancestor(folder)
    if not where.is_dir():
        what = "" if where == folder else f": {where}"
        raise PrecheckError(f"{label} {folder}{what} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".refinery-write-probe-")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if where == folder:
            raise PrecheckError(f"{label} {folder} is not writable: {reason}") from None
        raise PrecheckError(
            f"{label} {folder} cannot be created: {where} is not writable: {reason}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_writable(paths: RunPaths, labels: Mapping[str, str] = PATH_FLAGS) -> None:
    """Every folder the run writes: output, cache, and the manifest's and history's folders
    where they lie elsewhere. A run into an unwritable output would fail every package."""
    probe_writable(paths.output, _label(labels, "output"))
    probe_writable(paths.cache, _label(labels, "cache"))
    for name, home in (("manifest", paths.output), ("history_db", paths.cache)):
        parent = getattr(paths, name).parent
        if parent != home and home not in parent.parents:
            probe_writable(parent, _label(labels, name))


def check_paths(paths: RunPaths, labels: Mapping[str, str] = PATH_FLAGS) -> None:
    """All path checks, cheapest and most telling first."""
    check_input(paths.input, _label(labels, "input"))
    check_separate(paths, labels)
    check_writable(paths, labels)
