"""Lines of a block of log text, found without splitting it: the cheap pass before regexes.

A block holds whole lines split on "\\n" only (so line numbers agree with `sed -n`); a line is
known by its index, and `line_ends` gives where each one ends. Finding the lines that hold a
literal with `str.find` and running regexes on those lines only is what keeps scanning
megabytes of compiler output fast.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def without_colours(text: str) -> str:
    """`text` without ANSI escape sequences (colours, bold) that compilers and cargo print."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def line_ends(text: str) -> list[int]:
    """The offsets of the "\\n"s of `text`: line i ends at ends[i] (the last line, with no
    "\\n" after it, is line len(ends))."""
    return [m.start() for m in re.finditer("\n", text)]


def lines_holding(text: str, ends: list[int], literal: str) -> Iterator[int]:
    """Indexes of the lines of `text` that hold `literal`, in order, each once."""
    i = text.find(literal)
    while i >= 0:
        index = bisect.bisect_left(ends, i)
        yield index
        if index >= len(ends):
            return
        i = text.find(literal, ends[index] + 1)


def line_at(text: str, ends: list[int], index: int) -> str:
    """Line `index` of `text`, without its "\\n"."""
    start = ends[index - 1] + 1 if index else 0
    return text[start : ends[index] if index < len(ends) else len(text)]
