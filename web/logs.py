"""Build logs: find a package's attempt logs, read their tail, and follow one as it grows.

Files are only ever chosen from a listing of the logs folder, matched by name, version,
attempt and variant parsed out of the file names: a URL never becomes a path.

Any build can write in the logs folder, so a name that was a regular file when listed may be a
symlink to /etc/shadow a moment later. A log is therefore opened exactly once, by its bare name
relative to a descriptor of the folder, with O_NOFOLLOW (a symlink fails to open) and
O_NONBLOCK (a FIFO cannot hang the server), and must be a regular file by fstat of that same
descriptor; everything served (the page's tail, the JSON, the raw file, the live stream) is read
from that descriptor, never from the name again.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlencode

import anyio
from packaging.version import InvalidVersion, Version

from refinery_lib.failure_lines import ERROR_WINDOW, first_error_line, head_and_tail
from refinery_lib.text_lines import without_colours

# CACHE/logs/<key>-attempt<N>-<variant>.log, key = node_key(name, version) (no '-' inside)
_LOG_RE = re.compile(
    r"^(?P<name>[a-z0-9_]+)-(?P<version>[A-Za-z0-9_.+!]+)-attempt(?P<attempt>[0-9]{1,4})"
    r"-(?P<variant>[A-Za-z0-9_.+-]+)\.log$"
)
VARIANT_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,100}$")
TAIL_BYTES = 256 * 1024
CHUNK = 64 * 1024
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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
    """Attempt logs of a (PEP 503) name and version, oldest attempt first.

    Only regular files count (by lstat: a symlink is left out wherever it points); the
    listing only chooses a name, `open_log` checks again on the descriptor it serves.
    """
    stem = name.replace("-", "_")
    try:
        base = logs_dir.resolve()
        entries = list(os.scandir(base))
    except OSError:
        return []
    found = []
    for entry in entries:
        m = _LOG_RE.fullmatch(entry.name)
        if not m or m["name"] != stem or not _same_version(m["version"], version):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue  # a symlink (maybe out of the folder), a FIFO, a folder...
        found.append(LogFile(base / entry.name, m["version"], int(m["attempt"]),
                             m["variant"], st.st_size, st.st_mtime))
    return sorted(found, key=lambda f: (f.attempt, f.mtime, f.variant))


def open_log(log: LogFile) -> BinaryIO | None:
    """The log opened once, safely (see the module's docstring); None when it is not there
    or not a regular file any more."""
    try:
        dir_fd = os.open(log.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = os.open(log.path.name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError:  # ELOOP for a symlink, ENOENT for a log removed meanwhile
        return None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def size_of(fh: BinaryIO) -> int:
    return os.fstat(fh.fileno()).st_size


def iter_file(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """The first `size` bytes of an open log (its size when opened: Content-Length holds),
    closing it at the end or when the client goes away."""
    try:
        left = size
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        fh.close()


def pick(logs: list[LogFile], attempt: int | None, variant: str | None) -> LogFile | None:
    """The asked-for attempt/variant, or the most recently written log."""
    chosen = [f for f in logs if (attempt is None or f.attempt == attempt)
              and (variant is None or f.variant == variant)]
    return max(chosen, key=lambda f: (f.mtime, f.attempt), default=None)


def read_tail(fh: BinaryIO, limit: int = TAIL_BYTES) -> tuple[str, int, bool]:
    """(text, size, truncated): the last `limit` bytes of an open log, from a line boundary."""
    size = fh.seek(0, os.SEEK_END)
    start = max(0, size - limit)
    fh.seek(start)
    data = fh.read(size - start)
    if start:
        data = data.split(b"\n", 1)[-1]
    return data.decode("utf-8", errors="replace"), size, bool(start)


def tail_of(log: LogFile | None, limit: int = TAIL_BYTES) -> tuple[str, int, bool]:
    """`read_tail` of a log opened safely; empty when there is none (or it was swapped for
    something that is not a regular file)."""
    fh = open_log(log) if log is not None else None
    if fh is None:
        return "", 0, False
    with fh:
        return read_tail(fh, limit)


# -- the line of a failed build's log that says why ------------------------------------------

@dataclass(frozen=True)
class FirstError:
    """A failed build's error line; `line_no` is 1-based, 0 where unknown (found in the tail
    of a log too long to count its lines)."""

    line_no: int
    text: str


def _line_no_of(text: str, found: str) -> int:
    """Where the line `first_error_line` returned is in `text` (it may have shortened the
    line, or joined the next one to it: its first words are looked for); 0 if not there."""
    probe = found.strip("…").strip()[:60]
    if not probe:
        return 0
    for index, line in enumerate(text.split("\n")):
        if probe in without_colours(line):
            return index + 1
    return 0


def first_error(log: LogFile | None, window: int = ERROR_WINDOW) -> FirstError | None:
    """What went wrong, by `refinery_lib.failure_lines.first_error_line` (the line the CLI
    reports too), over the log's head and tail read from a safely opened descriptor
    (`open_log`): never the path again, which a build could have swapped for a link by now."""
    fh = open_log(log) if log is not None else None
    if fh is None:
        return None
    with fh:
        head, tail = head_and_tail(fh, window)
    head_text = head.decode("utf-8", errors="replace")
    line = first_error_line(head_text + tail.decode("utf-8", errors="replace"))
    if not line:
        return None
    return FirstError(_line_no_of(head_text, line), line)


@functools.lru_cache(maxsize=256)
def cached_first_error(log: LogFile) -> FirstError | None:
    """`first_error` once per log file version: its size and mtime are part of the key."""
    return first_error(log)


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

    `locate` is asked again on every poll that has caught up with what was there, so a rebuild
    that replaces the file (a new inode, or the file got shorter) is followed too: a `reset`
    event tells the page to clear. Each such poll opens the located name safely (`open_log`)
    and reads from the descriptor it holds for that inode, never by name. `poll` does blocking
    file I/O; the stream runs it in a thread.

    A poll reads at most CHUNK bytes of the log and sends at most about CHUNK bytes of events
    (`budget`): a watcher following a 200 MB log from its start costs O(CHUNK) memory, and
    the stream polls again at once while there is more (`more`).
    """

    def __init__(self, locate: Callable[[], LogFile | None], offset: int = 0,
                 max_line: int = 8192, budget: int = CHUNK):
        self.locate, self.offset, self.max_line, self.budget = locate, offset, max_line, budget
        self.consumed = offset  # file offset of the first byte of `buf`
        self.buf = b""
        self.current: tuple[int, int] | None = None
        self.fh: BinaryIO | None = None
        self.size = 0  # the log's size when last looked at

    @property
    def more(self) -> bool:
        """Whether the log held more than was read when it was last looked at."""
        return self.fh is not None and self.size > self.offset

    def _follow(self) -> tuple[BinaryIO, os.stat_result, str] | None:
        """The descriptor to read (the one held, or the log that replaced it) and its stat."""
        log = self.locate()
        fresh = open_log(log) if log is not None else None
        if log is None or fresh is None:
            return None
        st = os.fstat(fresh.fileno())
        if self.fh is not None and (st.st_dev, st.st_ino) == self.current:
            fresh.close()  # the same file as before: keep reading the descriptor we hold
        else:
            self.close()
            self.fh = fresh
        return self.fh, st, log.path.name

    def poll(self) -> list[str]:
        """Server-sent events (id = byte offset after the line) for what is new since last
        time, at most CHUNK bytes of the log's worth."""
        out = []
        if not self.more:  # caught up: look for the log again (a rebuild may have replaced it)
            followed = self._follow()
            if followed is None:
                return []
            _, st, name = followed
            ident = (st.st_dev, st.st_ino)
            if (self.current is not None and ident != self.current) or st.st_size < self.offset:
                self.offset = self.consumed = 0
                self.buf = b""
                out.append(sse(name, "reset", 0))
            self.current, self.size = ident, st.st_size
        if self.fh is None or self.size <= self.offset:
            return out
        chunk = os.pread(self.fh.fileno(), min(self.size - self.offset, CHUNK), self.offset)
        if not chunk:  # shorter than it was: the next poll looks again
            self.size = self.offset
            return out
        data, start, sent = self.buf + chunk, 0, 0
        while (end := data.find(b"\n", start)) >= 0:
            if sent >= self.budget:  # enough for one poll: the rest is read again next time
                self.offset, self.buf = self.consumed, b""
                return out
            self.consumed += end - start + 1
            out.append(sse(data[start:end].decode("utf-8", errors="replace"), "", self.consumed))
            sent += len(out[-1])
            start = end + 1
        self.offset += len(chunk)
        self.buf = data[start:]
        if len(self.buf) > self.max_line:  # a runaway line without a newline: send it
            self.consumed += len(self.buf)
            out.append(sse(self.buf.decode("utf-8", errors="replace"), "", self.consumed))
            self.buf = b""
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


async def stream(
    tailer: Tailer, is_disconnected: Callable[[], Awaitable[bool]], idle_timeout: float,
    poll: float = 0.5, heartbeat: float = 10.0,
) -> AsyncIterator[str]:
    """The SSE body: async, so a watcher holds no worker thread while the log is quiet, and a
    closed page is noticed at the next poll. Ends after `idle_timeout` s without a new line."""
    try:
        yield "retry: 2000\n\n"
        last_data = last_beat = time.monotonic()
        while not await is_disconnected():
            events = await anyio.to_thread.run_sync(tailer.poll)
            now = time.monotonic()
            if events:
                last_data = last_beat = now
                yield "".join(events)
                continue
            if tailer.more:  # a poll that sent nothing but has not caught up yet
                continue
            if now - last_data >= idle_timeout:
                yield sse("no new lines; reload to follow again", "idle")
                return
            if now - last_beat >= heartbeat:
                last_beat = now
                yield ": keep-alive\n\n"
            await anyio.sleep(poll)
    finally:
        tailer.close()  # the descriptor goes when the watcher does
