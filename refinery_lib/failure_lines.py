"""The line of a failure: what a build log, or a failed command's output, says went wrong.

`first_error_line` picks the line of a build log that names the error (a compiler's
diagnostic before the wrapper reporting its exit status, never pip's noise), reading only the
head and tail of a big log (`head_and_tail`); `last_lines` is the reason a command ends its
output with. These are the one way the refinery gets a failure's one-line reason, for every
builder, the summary table and the panel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from .text_lines import line_ends, lines_holding, without_colours

#: first_error_line reads this much of a log file from its start and as much from its end: a
#: build log can be hundreds of megabytes, and its error is near one end or the other
ERROR_WINDOW = 4 << 20
#: the longest line first_error_line returns (a compile command quoted in an error is useless)
ERROR_LINE_MAX = 300
#: joins the parts of a failure's one-line reason (error line, hint, log); a table that has
#: the room shows each part on a line of its own
REASON_SEP = " — "

#: prefixes of nested output: `python -m build` marks pip's with "<"/">", pip frames a failed
#: subprocess with "│", build marks its steps with "*"; none of them is part of the message
_DECORATION = re.compile(r"^[\s<>│┃|*]+")
#: lines that look like errors and say nothing: pip's and build's wrappers around the real
#: error, notes, warnings, the command lines and comments the refinery writes into its logs
_NOISE = re.compile(
    "|".join(
        (
            r"^error: [a-z0-9]+(?:-[a-z0-9]+)+\s*$",  # pip's codes: subprocess-exited-with-error
            r"^ERROR: (?:Failed (?:building|to build)|Could not build wheels)",
            r"^ERROR: (?:Ignored the following|pip's dependency resolver does not)",
            r"^ERROR Backend subprocess exited",
            r"^(?:note|hint|warning|TIP)\b",
            r"^[×╰╭─]",
            r"^exit code:? -?\d+",
            r"^\$ ",
            r"^# ",
            r"^Traceback \(most recent call last\)",
            r"^File \"",
            r":\d+(?::\d+)?: (?:warning|note):",
        )
    )
)
#: the lines that name a failure, of the tools builds run: gcc/clang/zig diagnostics and
#: setuptools' `error:` lines, cargo's `error[E0425]`, GNU ld, Python's last traceback line
#: (ModuleNotFoundError, `Error: ...`), CMake, meson and pip `ERROR:`, sh's "not found", and
#: the refinery's own timeout
_STRONG = re.compile(
    "|".join(
        (
            r"^(?:[^\s:][^:]*:\d+(?::\d+)?:\s*|[\w.+/-]+:\s+)?(?:fatal\s+)?error(?:\[E\d+\])?:\s*\S",
            r"^[^\s:][^:]*:\d+(?::\d+)?:\s*(?:Error|FATAL):\s*\S",  # GNU as, ld
            r"^(?:/usr)?(?:/bin/)?(?:ba|da)?sh: (?:\d+: |line \d+: )\S",  # sh: 1: x: not found
            r"\bfatal error:",
            r"\bNo module named\b",
            r"^CMake Error\b",
            r"^(?:\S+:\d+:\d+:\s*)?ERROR:\s*\S",
            r"^(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception):\s+\S",
            r"\bcannot find -l\S",
            r"\bundefined reference to\b",
            r": (?:[Cc]ommand )?not found\s*$",
            r"\bNo matching distribution found\b",
            r": No such file or directory\s*$",
            r"\bkilled after .* timeout\b",
        )
    )
)
#: any mention of an error: the last one is the answer when no line above matched
_WEAK = re.compile(r"\b(?:error|Error|ERROR|fatal|FATAL|failed|FAILED)\b")
#: every line _STRONG or _WEAK matches holds one of these (the cheap test that comes first)
_ERROR_WORDS = (
    "rror", "RROR", "fatal", "FATAL", "failed", "FAILED", "Exception", "sh: ", "No module",
    "not found", "No such file", "cannot find -l", "undefined reference", "killed after",
    "No matching distribution",
)


def first_error_line(log: str | Path) -> str:
    """The line of a build log that says what went wrong, for a failure's one-line reason.

    A Path is read from disk, its first and last ERROR_WINDOW bytes only (so a 200 MB log
    costs 8 MB); a str is the log's text. The first line naming a real error wins (a compiler
    `error:` comes before the wrapper that reports its exit status); noise such as pip's
    `error: subprocess-exited-with-error` never does. With no such line: the last line that
    mentions an error, else the last meaningful line. A message that goes on on the next line
    (CMake's, or pip's output wrapped by `build`) is joined to it. "" for an empty log.
    """
    try:
        windows = _log_windows(log) if isinstance(log, Path) else [log]
    except OSError:
        return ""
    weak = ""
    lines: list[str] = []
    for text in windows:
        text = without_colours(text)
        lines = [line.rstrip("\r") for line in text.split("\n")]
        for i in _lines_with(text, _ERROR_WORDS):
            clean = _DECORATION.sub("", lines[i]).strip()
            if not clean or _NOISE.search(clean):
                continue
            found = _STRONG.search(clean)
            if found:
                return _shorten(clean + _continuation(lines, i, clean), found.start())
            if _WEAK.search(clean):
                weak = clean
    return _shorten(weak or _last_meaningful(lines))


def _lines_with(text: str, words: tuple[str, ...]) -> list[int]:
    """Indexes of the lines (split on "\\n") of `text` that hold one of `words`, in order:
    the regexes then run on a few lines, not on every line of megabytes of compiler output."""
    ends = line_ends(text)
    return sorted({index for word in words for index in lines_holding(text, ends, word)})


def _last_meaningful(lines: list[str]) -> str:
    for line in reversed(lines):
        clean = _DECORATION.sub("", line).strip()
        if clean and not _NOISE.search(clean):
            return clean
    return ""


def _log_windows(path: Path) -> list[str]:
    """The head and the tail of a log file, in whole lines (one text when it is small)."""
    with path.open("rb") as fh:
        head, tail = head_and_tail(fh, ERROR_WINDOW)
    return [part.decode("utf-8", errors="replace") for part in (head, tail)][: 2 if tail else 1]


def head_and_tail(fh: BinaryIO, window: int = ERROR_WINDOW) -> tuple[bytes, bytes]:
    """(head, tail) of an open log: the log whole and b"" when it fits in two windows; else
    its first and last `window` bytes, cut to whole lines. Never more than 2 * `window`
    bytes are read, even if the log grows meanwhile."""
    size = fh.seek(0, 2)
    fh.seek(0)
    if size <= 2 * window:
        return fh.read(size), b""
    head = fh.read(window)
    fh.seek(size - window)
    tail = fh.read(window)
    head = head[: head.rfind(b"\n") + 1] or head
    tail = tail[tail.find(b"\n") + 1 :] or tail
    return head, tail


def last_lines(output: str, count: int = 1, limit: int = ERROR_LINE_MAX) -> str:
    """The last `count` non-blank lines of a command's output, stripped and joined by
    spaces, cut to `limit` characters: a failed command's reason when it ends its output
    with it (pip's resolver, an import's traceback). "" for output with no text."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " ".join(lines[-count:])[:limit]


def _continuation(raw: list[str], i: int, clean: str) -> str:
    """What follows a message on the next lines: the detail after a colon (CMake, cargo),
    or the rest of a line `build` wrapped (its nested output is marked "<", the wrap is not)."""
    rest = raw[i + 1 : i + 4]
    if clean.endswith(":") and rest and rest[0].strip() and not _NOISE.search(rest[0].strip()):
        return " " + _DECORATION.sub("", rest[0]).strip()
    if not raw[i].lstrip().startswith(("<", ">")):
        return ""
    joined = ""
    for line in rest:
        if not line.startswith("  ") or line.lstrip().startswith(("<", ">")):
            break
        piece = line.strip()
        joined += piece if (clean + joined).endswith("-") else " " + piece
    return joined


def _shorten(line: str, at: int = 0) -> str:
    """At most ERROR_LINE_MAX characters of `line`, with what matched at `at` kept in view
    (an error at the end of a long command line)."""
    if len(line) <= ERROR_LINE_MAX:
        return line
    room = ERROR_LINE_MAX - 2
    if at < room // 2:
        return line[: ERROR_LINE_MAX - 1] + "…"
    start = min(at - room // 4, len(line) - room)
    end = start + room
    return "…" + line[start:end] + ("…" if end < len(line) else "")
