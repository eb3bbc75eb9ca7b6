"""The retry queue: a JSON file of rebuild requests shared by the panel, the CLI and the worker.

Several processes (panel workers, `refinery queue`, the worker service) touch the same file,
so every change is a read-modify-write under an exclusive `fcntl` lock on a sidecar lock file
(the data file itself is replaced by rename, which would orphan a lock held on it), and every
write goes to a temporary file that is renamed over the old one, so readers never see half a
queue and a crash never leaves a truncated one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import RefineryError

QUEUE_FILE = "retry_queue.json"
FORMAT = 1

_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_PYTHON_TAG_RE = re.compile(r"^(cp|py)3[0-9]{1,2}$")
_PLATFORM_RE = re.compile(r"^[A-Za-z0-9_.]{1,100}$")
_SYSTEM_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:~-]{0,199}$")
MAX_STEPS = 50
MAX_ARG = 4096


class QueueError(RefineryError):
    """A queue request or queue file is not acceptable."""


class RequestNotFound(QueueError):
    """No queued request has that id (drained or deleted meanwhile)."""


def normalize_name(name: str) -> str:
    """PEP 503 name, refusing anything that is not a valid project name."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise QueueError(f"not a valid package name: {name!r}")
    return canonicalize_name(name)


def normalize_version(version: str) -> str:
    """A PEP 440 version as written (empty means: whatever the plan picks)."""
    version = (version or "").strip()
    if not version:
        return ""
    try:
        Version(version)
    except InvalidVersion as exc:
        raise QueueError(f"not a PEP 440 version: {version!r}") from exc
    # the raw string, not str(Version), so it matches the file names the build wrote
    if not re.match(r"^[A-Za-z0-9_.+!-]+$", version):
        raise QueueError(f"not a PEP 440 version: {version!r}")
    return version


def normalize_python_tag(tag: str) -> str:
    """`cp311` from `cp311`, `3.11` or `311`; empty stays empty (the worker's target)."""
    tag = (tag or "").strip()
    if not tag:
        return ""
    m = re.match(r"^3\.?([0-9]{1,2})$", tag)
    if m:
        tag = f"cp3{m.group(1)}"
    if not _PYTHON_TAG_RE.match(tag):
        raise QueueError(f"not a python tag: {tag!r}")
    return tag


def python_version(tag: str) -> str:
    """`3.11` from `cp311`: the form `refinery --python` takes."""
    return f"3.{tag[3:]}" if tag else ""


def check_steps(steps: Any) -> list[list[str]]:
    """Recipe steps are argument lists, never shell strings: nothing is ever run by a shell."""
    if not isinstance(steps, list) or len(steps) > MAX_STEPS:
        raise QueueError(f"recipe steps must be a list of at most {MAX_STEPS} argument lists")
    out = []
    for step in steps:
        if not isinstance(step, list) or not step:
            raise QueueError("each recipe step must be a non-empty list of arguments")
        if not all(isinstance(a, str) and 0 < len(a) <= MAX_ARG and "\x00" not in a for a in step):
            raise QueueError(f"recipe step arguments must be non-empty strings: {step!r}")
        out.append(list(step))
    return out


def check_system_packages(names: Any) -> list[str]:
    if not isinstance(names, list) or len(names) > 100:
        raise QueueError("system packages must be a list of at most 100 names")
    for n in names:
        if not isinstance(n, str) or not _SYSTEM_PACKAGE_RE.match(n):
            raise QueueError(f"not a system package name: {n!r}")
    # keep the order given, drop repeats
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class RetryRequest:
    """One queued rebuild: which package, for which target, with which recipe."""

    name: str
    version: str = ""
    python_tag: str = ""
    platform_tag: str = ""
    recipe_steps: list[list[str]] = field(default_factory=list)
    system_packages: list[str] = field(default_factory=list)
    note: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        # validated on every construction, so a request read back from disk is as safe as a new one
        object.__setattr__(self, "name", normalize_name(self.name))
        object.__setattr__(self, "version", normalize_version(self.version))
        object.__setattr__(self, "python_tag", normalize_python_tag(self.python_tag))
        if self.platform_tag and not _PLATFORM_RE.match(self.platform_tag):
            raise QueueError(f"not a platform tag: {self.platform_tag!r}")
        object.__setattr__(self, "recipe_steps", check_steps(self.recipe_steps))
        object.__setattr__(self, "system_packages", check_system_packages(self.system_packages))
        if not isinstance(self.note, str) or len(self.note) > 2000:
            raise QueueError("note must be a string of at most 2000 characters")
        if not re.match(r"^[0-9a-f]{8,64}$", self.id):
            raise QueueError(f"bad request id {self.id!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryRequest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class RetryQueue:
    """The queue file at `path` (normally CACHE/retry_queue.json)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @classmethod
    def in_cache(cls, cache: Path | str) -> RetryQueue:
        return cls(Path(cache) / QUEUE_FILE)

    # -- reading -----------------------------------------------------------------------
    def requests(self) -> list[RetryRequest]:
        """A consistent snapshot (the file is only ever replaced whole, so no lock needed)."""
        return self._read()

    def __len__(self) -> int:
        return len(self._read())

    def get(self, request_id: str) -> RetryRequest:
        for r in self._read():
            if r.id == request_id:
                return r
        raise RequestNotFound(f"no queued request {request_id!r}")

    # -- changing ----------------------------------------------------------------------
    def add(self, request: RetryRequest) -> RetryRequest:
        with self._locked() as items:
            items.append(request)
        return request

    def update(self, request_id: str, **changes: Any) -> RetryRequest:
        allowed = {"version", "python_tag", "platform_tag", "recipe_steps", "system_packages",
                   "note"}
        unknown = set(changes) - allowed
        if unknown:
            raise QueueError(f"cannot change {sorted(unknown)}")
        with self._locked() as items:
            for i, r in enumerate(items):
                if r.id == request_id:
                    items[i] = replace(r, **changes)
                    return items[i]
        raise RequestNotFound(f"no queued request {request_id!r}")

    def delete(self, request_id: str) -> RetryRequest:
        with self._locked() as items:
            for i, r in enumerate(items):
                if r.id == request_id:
                    return items.pop(i)
        raise RequestNotFound(f"no queued request {request_id!r}")

    def reorder(self, ids: list[str]) -> list[RetryRequest]:
        """Put `ids` first in that order; requests not named keep their order after them."""
        with self._locked() as items:
            by_id = {r.id: r for r in items}
            missing = [i for i in ids if i not in by_id]
            if missing or len(set(ids)) != len(ids):
                raise RequestNotFound(f"unknown or repeated request ids: {missing or ids}")
            rest = [r for r in items if r.id not in set(ids)]
            items[:] = [by_id[i] for i in ids] + rest
            return list(items)

    def drain(self) -> list[RetryRequest]:
        """Take every request and leave the queue empty, in one locked step."""
        with self._locked() as items:
            taken = list(items)
            items.clear()
        return taken

    def requeue(self, requests: list[RetryRequest]) -> None:
        """Put requests back at the front (a worker that could not start gives them back)."""
        with self._locked() as items:
            have = {r.id for r in items}
            items[:0] = [r for r in requests if r.id not in have]

    # -- the file ------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[list[RetryRequest]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                items = self._read()
                before = [r.to_json() for r in items]
                yield items
                if [r.to_json() for r in items] != before or not self.path.exists():
                    self._write(items)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self) -> list[RetryRequest]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            data = json.loads(text) if text.strip() else {"requests": []}
        except json.JSONDecodeError as exc:
            raise QueueError(f"queue file {self.path} does not parse: {exc}") from exc
        # a bare list is accepted too, as hand-written queue files tend to be
        raw = data if isinstance(data, list) else data.get("requests", [])
        return [RetryRequest.from_json(d) for d in raw]

    def _write(self, items: list[RetryRequest]) -> None:
        payload = {"format": FORMAT, "requests": [r.to_json() for r in items]}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def steps_to_text(steps: list[list[str]]) -> str:
    """Recipe steps as editable text: one shell-quoted command per line (never run by a shell)."""
    import shlex

    return "\n".join(shlex.join(s) for s in steps)


def steps_from_text(text: str) -> list[list[str]]:
    import shlex

    try:
        steps = [shlex.split(line) for line in (text or "").splitlines() if line.strip()]
    except ValueError as exc:
        raise QueueError(f"recipe steps do not parse: {exc}") from exc
    return check_steps([s for s in steps if s])


def packages_from_text(text: str) -> list[str]:
    return check_system_packages((text or "").replace(",", " ").split())

