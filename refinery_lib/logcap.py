"""Bounded build logs: what one command may leave in a log, and how logs are read back.

A build can print hundreds of megabytes (a compiler warning per line of a generated file, a
test suite run by setup.py). `BoundedLog` keeps, of one command's output, its first
`HEAD_BYTES` and its last `TAIL_BYTES`, and writes one marker line where the middle was left
out, saying how much. The head is written as it comes (a live view of the log shows it); once
it is full a notice line says the rest is held back, and the tail, kept in memory in a bounded
ring of chunks, is written when the command ends. Memory stays O(`TAIL_BYTES`) whatever the
command prints, and a log holds at most `HEAD_BYTES + TAIL_BYTES` (plus two lines) per command:
an attempt's log, which several commands append to, is capped per command.

Sizes are bytes of UTF-8. Secrets are replaced before anything is cut (`safe_env.Redactor`
runs first), so a cut can never leave half a secret in the log.

Readers never take a log whole: `iter_lines` streams a log file in blocks of `READ_BLOCK`
bytes, a line longer than `MAX_LINE` coming in pieces.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from .safe_env import Redactor

#: what is kept of the start of one command's output
HEAD_BYTES = 4 << 20
#: what is kept of the end of one command's output (held in memory until the command ends)
TAIL_BYTES = 4 << 20
#: how far before the head's end, and after the tail's start, a cut looks for a line break, so
#: that the head ends and the tail starts with whole lines
LINE_SNAP = 64 << 10
#: readers read a log in blocks this big
READ_BLOCK = 256 << 10
#: a longer line is given to readers in pieces of this size
MAX_LINE = 1 << 20
#: the marker line's start, for readers that want to recognise it
MARKER_PREFIX = "*** refinery: "


class _Text(Protocol):
    def write(self, text: str, /) -> object: ...
    def flush(self) -> object: ...


def human(n: int) -> str:
    """`n` bytes for people: 512 B, 12.5 KiB, 191.2 MiB, 4 MiB."""
    if n < 1024:
        return f"{n} B"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}".removesuffix(".0") + f" {unit}"
    raise AssertionError(n)  # pragma: no cover


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _cut_bytes(text: str, limit: int) -> tuple[str, str]:
    """`text` split after at most `limit` bytes of UTF-8, at a character boundary."""
    if text.isascii():
        return text[:limit], text[limit:]
    data = text.encode("utf-8", "surrogatepass")
    first = data[:limit].decode("utf-8", "ignore")  # a character cut in two is left out...
    return first, text[len(first):]  # ...and goes with the rest, whole


class BoundedLog:
    """Writes a stream of text (a command's output) to `out`, keeping its head and its tail.

    `write` as often as the output comes, `finish` once at the end (it writes the held-back
    tail and the marker; `out` itself is left open). With `redactor`, every piece goes through
    it first. `total` is what was written to this object (bytes of UTF-8), `elided` what of it
    is not in the log.
    """

    def __init__(self, out: _Text, head: int | None = None, tail: int | None = None,
                 redactor: Redactor | None = None):
        self.out = out
        self.head = HEAD_BYTES if head is None else head
        self.tail = TAIL_BYTES if tail is None else tail
        self.redactor = redactor
        self.total = 0
        self.elided = 0
        self._head_left = self.head
        self._held: collections.deque[tuple[str, int]] = collections.deque()  # (text, bytes)
        self._held_bytes = 0
        self._holding = False
        self._finished = False
        self._line_start = True  # the head written so far ends with a line break (or is empty)

    # -- writing -------------------------------------------------------------------------
    def write(self, text: str) -> None:
        if self.redactor is not None:
            text = self.redactor.feed(text)
        self._take(text)

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self.redactor is not None:
            self._take(self.redactor.flush())
        if self._holding:
            self._write_tail()
        self.out.flush()

    def _take(self, text: str) -> None:
        if not text:
            return
        size = _size(text)
        self.total += size
        if not self._holding:
            if size <= self._head_left:
                self._head_left -= size
                self.out.write(text)
                self.out.flush()
                self._line_start = text.endswith("\n")
                return
            first, text = self._head_cut(text)
            if first:
                self.out.write(first)
                self._line_start = first.endswith("\n")
            self._holding = True
            self.out.write(self._notice())
            self.out.flush()
            size = _size(text)
            if not text:
                return
        self._hold(text, size)

    def _head_cut(self, text: str) -> tuple[str, str]:
        """What of `text` still goes into the head: up to the head's size, back to the last
        line break within LINE_SNAP of its end if there is one."""
        first, rest = _cut_bytes(text, self._head_left)
        brk = first.rfind("\n")
        if brk >= 0 and _size(first[brk + 1:]) <= LINE_SNAP:
            first, rest = first[:brk + 1], first[brk + 1:] + rest
        self._head_left -= _size(first)
        return first, rest

    def _hold(self, text: str, size: int) -> None:
        if len(text) > self.tail:  # only its end can be kept (a character is 1 to 4 bytes)
            dropped = text[:-self.tail]
            text = text[-self.tail:]
            self.elided += _size(dropped)
            size -= _size(dropped)
        self._held.append((text, size))
        self._held_bytes += size
        while self._held and self._held_bytes - self._held[0][1] >= self.tail:
            gone = self._held.popleft()[1]
            self._held_bytes -= gone
            self.elided += gone

    def _write_tail(self) -> None:
        """The held-back output: all of it when none was dropped, else its last `tail` bytes
        from a line start (one found early in the first piece), after the marker. Written
        piece by piece: never a second copy of the tail in memory."""
        held, over = self._held, self._held_bytes - self.tail
        if over > 0 or self.elided:
            while over > 0:
                first, size = held.popleft()
                if size <= over:
                    self.elided, over = self.elided + size, over - size
                    continue
                dropped, first = _cut_bytes(first, over)
                if _size(dropped) < over:  # the character cut in two goes too
                    dropped, first = dropped + first[:1], first[1:]
                self.elided += _size(dropped)
                held.appendleft((first, size - _size(dropped)))
                over = 0
            if held:
                first, size = held[0]
                brk = first.find("\n", 0, LINE_SNAP)
                if brk >= 0 and (brk < len(first) - 1 or len(held) > 1):
                    self.elided += _size(first[:brk + 1])
                    held[0] = (first[brk + 1:], size - _size(first[:brk + 1]))
            self.out.write(self.marker())
        while held:
            self.out.write(held.popleft()[0])
        self._held_bytes = 0

    # -- the lines the log gets -------------------------------------------------------------
    def _notice(self) -> str:
        lead = "" if self._line_start else "\n"
        return (f"{lead}{MARKER_PREFIX}this command printed more than {human(self.head)}; the "
                f"rest is held back, and its last {human(self.tail)} are written here when it "
                "ends ***\n")

    def marker(self) -> str:
        """The line written where the middle of the output was left out."""
        return (f"{MARKER_PREFIX}{human(self.elided)} ({self.elided} bytes) of output elided "
                f"here (kept the first {human(self.head)} and the last {human(self.tail)}) "
                "***\n")


# -- reading ---------------------------------------------------------------------------------
def _blocks(path: Path, start: int, max_line: int) -> Iterator[tuple[str, bool]]:
    """(text, whole) from byte `start` of a log file on: whole lines, each ending with "\\n"
    (whole=True), else a piece of a line longer than `max_line`, or the last line when it has
    no end (whole=False). Read in blocks of READ_BLOCK bytes and decoded a block at a time."""
    with open(path, "rb") as fh:
        if start:
            fh.seek(start)
        rest = b""
        while block := fh.read(READ_BLOCK):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut].decode("utf-8", "replace"), True
            rest = data[cut:]
            while len(rest) > max_line:
                yield rest[:max_line].decode("utf-8", "replace"), False
                rest = rest[max_line:]
        if rest:
            yield rest.decode("utf-8", "replace"), False


def iter_lines(path: Path, start: int = 0, max_line: int = MAX_LINE) -> Iterator[str]:
    """The lines of a log file from byte `start` (split on "\\n", without it), decoded as
    UTF-8 with replacement: memory stays O(READ_BLOCK + `max_line`) whatever the size of the
    log, a line longer than that coming in pieces."""
    for text, whole in _blocks(path, start, max_line):
        if whole:
            lines = text.split("\n")
            lines.pop()  # what follows the last "\n": nothing
            yield from lines
        else:
            yield text


def texts_of(log: Path | str) -> Iterator[str]:
    """A log in texts of whole lines: a str is its own one text, a Path (or other path-like)
    is read in blocks of READ_BLOCK bytes (a line longer than MAX_LINE comes in pieces). For
    patterns that never match across a line break: the matches are those in the whole text."""
    if isinstance(log, str):
        return iter((log,))
    return (text for text, _ in _blocks(Path(os.fspath(log)), 0, MAX_LINE))


def lines_of(log: Path | str, splitlines: bool = True) -> Iterator[str]:
    """The lines of a log: a Path (or other path-like) is streamed from disk (as
    `iter_lines`), a str is the log's text. Split as `str.splitlines` does (on "\\r" too), or
    with `splitlines=False` on "\\n" only: the same lines either way as the text read whole
    (but for a line longer than MAX_LINE, which comes in pieces)."""
    if isinstance(log, str):
        return iter(log.splitlines() if splitlines else log.split("\n"))
    path = Path(os.fspath(log))
    if not splitlines:
        return iter_lines(path)
    return (line for text in texts_of(path) for line in text.splitlines())
