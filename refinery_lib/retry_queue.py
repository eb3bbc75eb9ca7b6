"""The retry queue: a JSON file of rebuild requests shared by the panel, the CLI and the worker.

Besides the queued requests, the file keeps the dead letters: requests the worker could not
run (the run refused to start with them), set aside with the reason instead of going back to
the front of the queue, where they would fail again on every drain. They stay visible until
someone deletes or re-queues them.

Several processes (panel workers, `refinery queue`, the worker service) touch the same file,
so every change is a read-modify-write under an exclusive lock (`files.exclusive`) on a
sidecar lock file (the data file itself is replaced by rename, which would orphan a lock held
on it), and every write goes to a temporary file that is renamed over the old one, so readers
never see half a queue and a crash never leaves a truncated one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import RefineryError
from .files import exclusive

QUEUE_FILE = "retry_queue.json"
FORMAT = 1

# every pattern is used with fullmatch: `$` would let a trailing newline through
_NAME_RE = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE)
_VERSION_CHARS_RE = re.compile(r"[A-Za-z0-9_.+!-]+")
_PYTHON_TAG_RE = re.compile(r"(cp|py)3[0-9]{1,2}")
_SHORT_PYTHON_RE = re.compile(r"3\.?([0-9]{1,2})")
# one platform tag as packaging.tags spells them: lower case, digits, underscores; no dots
_PLATFORM_RE = re.compile(r"[a-z0-9_]{1,100}")
_SYSTEM_PACKAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._:~-]{0,199}")
_ID_RE = re.compile(r"[0-9a-f]{8,64}")
MAX_STEPS = 50
MAX_ARG = 4096
MAX_REASON = 2000


class QueueError(RefineryError):
    """A queue request or queue file is not acceptable."""


class RequestNotFound(QueueError):
    """No queued request has that id (drained or deleted meanwhile)."""


def normalize_name(name: str) -> str:
    """PEP 503 name, refusing anything that is not a valid project name."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise QueueError(f"not a valid package name: {name!r}")
    return canonicalize_name(name)


def _text(value: Any, what: str) -> str:
    """A field that may be left out: its text, "" for None; QueueError naming `what` for
    anything but a string."""
    if not isinstance(value, str | None):
        raise QueueError(f"not {what}: {value!r}")
    return value or ""


def normalize_version(version: str) -> str:
    """A PEP 440 version as written (empty means: whatever the plan picks)."""
    version = _text(version, "a PEP 440 version").strip()
    if not version:
        return ""
    try:
        Version(version)
    except InvalidVersion as exc:
        raise QueueError(f"not a PEP 440 version: {version!r}") from exc
    # the raw string, not str(Version), so it matches the file names the build wrote
    if not _VERSION_CHARS_RE.fullmatch(version):
        raise QueueError(f"not a PEP 440 version: {version!r}")
    return version


def normalize_python_tag(tag: str) -> str:
    """`cp311` from `cp311`, `3.11` or `311`; empty stays empty (the worker's target)."""
    tag = _text(tag, "a python tag").strip()
    if not tag:
        return ""
    m = _SHORT_PYTHON_RE.fullmatch(tag)
    if m:
        tag = f"cp3{m.group(1)}"
    if not _PYTHON_TAG_RE.fullmatch(tag):
        raise QueueError(f"not a python tag: {tag!r}")
    return tag


def normalize_platform_tag(tag: str) -> str:
    """One platform tag the run accepts (`manylinux2014_s390x`, `linux_s390x`, `native`...).

    Checked here, at enqueue, with the run's own rule (refinery_lib.targets.Target), so a
    request the run would refuse is refused now, with the reason, instead of in the worker.
    """
    tag = _text(tag, "a platform tag")
    if not tag:
        return ""
    if not _PLATFORM_RE.fullmatch(tag):
        raise QueueError(f"not a platform tag: {tag!r}")
    from .targets import Target

    try:
        Target(platform_tag=tag)
    except RefineryError as exc:
        raise QueueError(str(exc)) from exc
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
        if not isinstance(n, str) or not _SYSTEM_PACKAGE_RE.fullmatch(n):
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
        object.__setattr__(self, "platform_tag", normalize_platform_tag(self.platform_tag))
        object.__setattr__(self, "recipe_steps", check_steps(self.recipe_steps))
        object.__setattr__(self, "system_packages", check_system_packages(self.system_packages))
        if not isinstance(self.note, str) or len(self.note) > 2000:
            raise QueueError("note must be a string of at most 2000 characters")
        if not isinstance(self.id, str) or not _ID_RE.fullmatch(self.id):
            raise QueueError(f"bad request id {self.id!r}")
        if not isinstance(self.created, int | float):
            raise QueueError(f"bad creation time {self.created!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryRequest:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _raw_id(raw: Any) -> str:
    """A stable id for a stored entry that may not validate: its own, else a digest of it."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and _ID_RE.fullmatch(raw["id"]):
        return raw["id"]
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class DeadLetter:
    """A request the worker could not run, set aside with the reason.

    `request` is kept as it was stored, not as a RetryRequest: an entry that does not
    validate (written by hand, or under laxer rules) must still be shown and deletable.
    Re-queueing validates it again.
    """

    id: str
    request: dict[str, Any]
    reason: str
    failed: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_RE.fullmatch(self.id):
            raise QueueError(f"bad dead letter id {self.id!r}")
        if not isinstance(self.request, dict):
            raise QueueError("a dead letter's request must be an object")
        reason = self.reason if isinstance(self.reason, str) else repr(self.reason)
        object.__setattr__(self, "reason", reason[:MAX_REASON])
        failed = self.failed if isinstance(self.failed, int | float) else 0.0
        object.__setattr__(self, "failed", float(failed))

    @property
    def name(self) -> str:
        """For display only (the stored name may be anything)."""
        return str(self.request.get("name", ""))[:200]

    @classmethod
    def of(cls, request: RetryRequest, reason: str) -> DeadLetter:
        return cls(request.id, request.to_json(), reason)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "request": self.request, "reason": self.reason,
                "failed": self.failed}

    @classmethod
    def from_json(cls, data: Any) -> DeadLetter:
        if not isinstance(data, dict):
            return cls(_raw_id(data), {"raw": data}, "not a dead letter entry", 0.0)
        request = data.get("request")
        if not isinstance(request, dict):
            request = {"raw": request}
        return cls(_raw_id(data), request, data.get("reason", ""), data.get("failed", 0.0))

    def revive(self) -> RetryRequest:
        """The request again, validated as a new one (QueueError if it does not pass)."""
        return RetryRequest.from_json(self.request)


#: what the queue file holds a list of
Entry = TypeVar("Entry", RetryRequest, DeadLetter)


@dataclass
class QueueState:
    """What the file holds: the queue in order, and the dead letters, oldest first."""

    requests: list[RetryRequest] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "requests": [r.to_json() for r in self.requests],
                "dead": [d.to_json() for d in self.dead]}


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
        return self._read().requests

    def dead(self) -> list[DeadLetter]:
        """The requests the worker could not run, with the reasons."""
        return self._read().dead

    def __len__(self) -> int:
        """Queued requests only: dead letters are never drained, so they do not count."""
        return len(self._read().requests)

    def get(self, request_id: str) -> RetryRequest:
        for r in self._read().requests:
            if r.id == request_id:
                return r
        raise RequestNotFound(f"no queued request {request_id!r}")

    # -- changing ----------------------------------------------------------------------
    def add(self, request: RetryRequest) -> RetryRequest:
        with self._locked() as state:
            state.requests.append(request)
        return request

    def update(self, request_id: str, **changes: Any) -> RetryRequest:
        allowed = {"version", "python_tag", "platform_tag", "recipe_steps", "system_packages",
                   "note"}
        unknown = set(changes) - allowed
        if unknown:
            raise QueueError(f"cannot change {sorted(unknown)}")
        with self._locked() as state:
            items = state.requests
            for i, r in enumerate(items):
                if r.id == request_id:
                    items[i] = replace(r, **changes)
                    return items[i]
        raise RequestNotFound(f"no queued request {request_id!r}")

    def delete(self, request_id: str) -> RetryRequest:
        return self._pop(request_id, "queued request", lambda state: state.requests)

    def reorder(self, ids: list[str]) -> list[RetryRequest]:
        """Put `ids` first in that order; requests not named keep their order after them."""
        with self._locked() as state:
            items = state.requests
            by_id = {r.id: r for r in items}
            missing = [i for i in ids if i not in by_id]
            if missing or len(set(ids)) != len(ids):
                raise RequestNotFound(f"unknown or repeated request ids: {missing or ids}")
            rest = [r for r in items if r.id not in set(ids)]
            items[:] = [by_id[i] for i in ids] + rest
            return list(items)

    def drain(self) -> list[RetryRequest]:
        """Take every request and leave the queue empty, in one locked step."""
        with self._locked() as state:
            taken = list(state.requests)
            state.requests.clear()
        return taken

    def put_back(self, requests: list[RetryRequest]) -> None:
        """Put requests back at the front: only for a drain that never got to try them (the
        worker's runs that fail to start use `bury`, so they do not fail on every drain)."""
        with self._locked() as state:
            have = {r.id for r in state.requests}
            state.requests[:0] = [r for r in requests if r.id not in have]

    def bury(self, requests: list[RetryRequest], reason: str) -> list[DeadLetter]:
        """Set drained requests aside as dead letters with `reason`, instead of re-queueing."""
        letters = [DeadLetter.of(r, reason) for r in requests]
        with self._locked() as state:
            ids = {d.id for d in letters}
            state.requests[:] = [r for r in state.requests if r.id not in ids]
            state.dead[:] = [d for d in state.dead if d.id not in ids] + letters
        return letters

    def revive(self, dead_id: str) -> RetryRequest:
        """Re-queue a dead letter at the end of the queue, validated as a new request."""
        with self._locked() as state:
            for i, d in enumerate(state.dead):
                if d.id == dead_id:
                    request = d.revive()
                    if any(r.id == request.id for r in state.requests):
                        request = replace(request, id=uuid.uuid4().hex)
                    state.requests.append(request)
                    del state.dead[i]
                    return request
        raise RequestNotFound(f"no dead letter {dead_id!r}")

    def delete_dead(self, dead_id: str) -> DeadLetter:
        return self._pop(dead_id, "dead letter", lambda state: state.dead)

    def _pop(self, entry_id: str, what: str, entries: Callable[[QueueState], list[Entry]]
             ) -> Entry:
        """Take the entry `entry_id` out of the list `entries` picks (RequestNotFound, naming
        it a `what`, when it is not there)."""
        with self._locked() as state:
            held = entries(state)
            for i, entry in enumerate(held):
                if entry.id == entry_id:
                    return held.pop(i)
        raise RequestNotFound(f"no {what} {entry_id!r}")

    # -- the file ------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[QueueState]:
        with exclusive(self.lock_path):
            state = self._read()
            before = state.to_json()
            yield state
            if state.to_json() != before or not self.path.exists():
                self._write(state)

    def _read(self) -> QueueState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return QueueState()
        try:
            data = json.loads(text) if text.strip() else {"requests": []}
        except json.JSONDecodeError as exc:
            raise QueueError(f"queue file {self.path} does not parse: {exc}") from exc
        # a bare list is accepted too, as hand-written queue files tend to be
        raw = data if isinstance(data, list) else data.get("requests", [])
        dead = [] if isinstance(data, list) else data.get("dead", [])
        if not isinstance(raw, list) or not isinstance(dead, list):
            raise QueueError(f"queue file {self.path}: requests and dead must be lists")
        state = QueueState(dead=[DeadLetter.from_json(d) for d in dead])
        for entry in raw:
            try:
                state.requests.append(RetryRequest.from_json(entry))
            except (QueueError, TypeError, AttributeError) as exc:
                # written by a laxer version, or by hand: set aside, visible, instead of
                # making the whole queue unreadable (and every drain fail on it)
                state.dead.append(DeadLetter(_raw_id(entry), entry if isinstance(entry, dict)
                                             else {"raw": entry},
                                             f"not a valid request: {exc}", 0.0))
        return state

    def _write(self, state: QueueState) -> None:
        payload = state.to_json()
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

