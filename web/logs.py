"""Build logs: find a package's attempt logs, read their tail, and follow one as it grows.

Files are only ever chosen from a listing of the logs folder, matched by name, version,
attempt and variant parsed out of the file names: a URL never becomes a path. A file that
resolves outside the folder (a symlink) is refused as well.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import anyio
from packaging.version import InvalidVersion, Version

# CACHE/logs/<key>-attempt<N>-<variant>.log, key = node_key(name, version) (no '-' inside)
_LOG_RE = re.compile(
    r"^(?P<name>[a-z0-9_]+)-(?P<version>[A-Za-z0-9_.+!]+)-attempt(?P<attempt>[0-9]{1,4})"
    r"-(?P<variant>[A-Za-z0-9_.+-]+)\.log$"
)
VARIANT_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,100}$")
TAIL_BYTES = 256 * 1024


@dataclass(frozen=True)
class LogFile:
    path: Path
    version: str
    attempt: int
    variant: str
    size: int
    mtime: float

    @property
    def label(self) -> str:
        return f"attempt {self.attempt} ({self.variant})"

    def url(self, name: str, suffix: str = "") -> str:
        """The panel's URL of this log (`suffix` /raw or /stream)."""
        query = urlencode({"attempt": self.attempt, "variant": self.variant})
        return f"/logs/{quote(name)}/{quote(self.version)}{suffix}?{query}"


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def find_logs(logs_dir: Path, name: str, version: str) -> list[LogFile]:
    """Attempt logs of a (PEP 503) name and version, oldest attempt first."""
    stem = name.replace("-", "_")
    try:
        base = logs_dir.resolve()
        entries = list(os.scandir(base))
    except OSError:
        return []
    found = []
    for entry in entries:
        m = _LOG_RE.match(entry.name)
        if not m or m["name"] != stem or not _same_version(m["version"], version):
            continue
        path = Path(entry.path)
        if path.resolve().parent != base or not path.resolve().is_file():
            continue  # a symlink pointing out of the logs folder
        st = path.stat()
        found.append(LogFile(path, m["version"], int(m["attempt"]), m["variant"], st.st_size,
                             st.st_mtime))
    return sorted(found, key=lambda f: (f.attempt, f.mtime, f.variant))


def pick(logs: list[LogFile], attempt: int | None, variant: str | None) -> LogFile | None:
    """The asked-for attempt/variant, or the most recently written log."""
    chosen = [f for f in logs if (attempt is None or f.attempt == attempt)
              and (variant is None or f.variant == variant)]
    return max(chosen, key=lambda f: (f.mtime, f.attempt), default=None)


def read_tail(path: Path, limit: int = TAIL_BYTES) -> tuple[str, int, bool]:
    """(text, size, truncated): the last `limit` bytes, starting at a line boundary."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - limit)
        fh.seek(start)
        data = fh.read(size - start)
    if start:
        data = data.split(b"\n", 1)[-1]
    return data.decode("utf-8", errors="replace"), size, bool(start)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def sse(data: str, event: str = "", event_id: int | None = None) -> str:
    """One server-sent event; data never holds a raw newline (one event per log line)."""
    out = ""
    if event:
        out += f"event: {event}\n"
    if event_id is not None:
        out += f"id: {event_id}\n"
    return out + "data: " + data.replace("\r", "").replace("\n", " ") + "\n\n"


class Tailer:
    """Reads the lines appended to the log `locate()` returns, from `offset`, one poll at a time.

    `locate` is asked again on every poll, so a rebuild that replaces the file (a new inode,
    or the file got shorter) is followed too: a `reset` event tells the page to clear.
    `poll` does blocking file I/O; the stream runs it in a worker thread.
    """

    def __init__(self, locate: Callable[[], LogFile | None], offset: int = 0,
                 max_line: int = 8192):
        self.locate, self.offset, self.max_line = locate, offset, max_line
        self.consumed = offset  # file offset of the first byte of `buf`
        self.buf = b""
        self.current: tuple[int, int] | None = None

    def poll(self) -> list[str]:
        """Server-sent events (id = byte offset after the line) for what is new since last time."""
        log = self.locate()
        st = _stat(log.path) if log is not None else None
        if st is None:
            return []
        out = []
        ident = (st.st_dev, st.st_ino)
        if (self.current is not None and ident != self.current) or st.st_size < self.offset:
            self.offset = self.consumed = 0
            self.buf = b""
            out.append(sse(log.path.name, "reset", 0))
        self.current = ident
        while st.st_size > self.offset:
            with open(log.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(min(st.st_size - self.offset, 1024 * 1024))
            if not chunk:
                break
            self.offset += len(chunk)
            *lines, self.buf = (self.buf + chunk).split(b"\n")
            if len(self.buf) > self.max_line:  # a runaway line without a newline: send it
                lines.append(self.buf)
                self.consumed -= 1  # it has no newline to count
                self.buf = b""
            for line in lines:
                self.consumed += len(line) + 1
                out.append(sse(line.decode("utf-8", errors="replace"), "", self.consumed))
        return out


async def stream(
    tailer: Tailer, is_disconnected: Callable[[], Awaitable[bool]], idle_timeout: float,
    poll: float = 0.5, heartbeat: float = 10.0,
) -> AsyncIterator[str]:
    """The SSE body: async, so a watcher holds no worker thread while the log is quiet, and a
    closed page is noticed at the next poll. Ends after `idle_timeout` s without a new line."""
    yield "retry: 2000\n\n"
    last_data = last_beat = time.monotonic()
    while not await is_disconnected():
        events = await anyio.to_thread.run_sync(tailer.poll)
        now = time.monotonic()
        if events:
            last_data = last_beat = now
            yield "".join(events)
            continue
        if now - last_data >= idle_timeout:
            yield sse("no new lines; reload to follow again", "idle")
            return
        if now - last_beat >= heartbeat:
            last_beat = now
            yield ": keep-alive\n\n"
        await anyio.sleep(poll)
