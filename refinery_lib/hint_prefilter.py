"""The prefilter of hint matching: literal text that every match of a pattern holds.

`required_literals` reads a regex's source with a small parser of Python's regex syntax and
returns literal strings one of which is in every text the regex matches; `Prefilter` indexes
a catalog by those literals, so each pattern runs only on the lines of a log that hold one.
The parser is conservative: what it does not read as plain literal text (classes, escapes of
a kind, optional or repeated parts, lookarounds, case-insensitive groups) only ends a literal,
so a literal it returns is always in every match, if shorter than it could be.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .text_lines import lines_holding

_REPEAT = re.compile(r"\{([0-9]*)(,[0-9]*)?\}")
_FLAGS = re.compile(r"([aiLmsux]*)(?:-([imsx]*))?([:)])")
_SIMPLE_ESCAPES = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_OCTAL = "01234567"
_DIGITS = "0123456789"


class _Unreadable(Exception):
    """The pattern uses syntax the parser does not read (inline verbose or ignore-case)."""


@dataclass(frozen=True)
class _Group:
    """A group's alternatives; `ignorecase` when the group turns case-insensitivity on."""

    alternatives: tuple[tuple[_Node, ...], ...]
    ignorecase: bool = False


#: an atom: one literal character, a group, or None for anything else (a class, an anchor,
#: a lookaround, a back reference): then (atom, least count, whether a quantifier follows)
_Atom = str | _Group | None
_Node = tuple[_Atom, int, bool]


class _Reader:
    """A recursive-descent reader of one pattern into alternatives of sequences of atoms."""

    def __init__(self, pattern: str):
        self.src = pattern
        self.pos = 0

    def peek(self, ahead: int = 0) -> str:
        at = self.pos + ahead
        return self.src[at] if at < len(self.src) else ""

    def next_in(self, chars: str) -> bool:
        char = self.peek()
        return bool(char) and char in chars

    def take(self, count: int = 1) -> str:
        text = self.src[self.pos : self.pos + count]
        self.pos += count
        return text

    def skip_to(self, char: str) -> None:
        end = self.src.find(char, self.pos)
        self.pos = len(self.src) if end < 0 else end + 1

    def alternatives(self) -> tuple[tuple[_Node, ...], ...]:
        found = [self.sequence()]
        while self.peek() == "|":
            self.take()
            found.append(self.sequence())
        return tuple(found)

    def sequence(self) -> tuple[_Node, ...]:
        nodes: list[_Node] = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            nodes.append((atom, *self.quantifier()))
        return tuple(nodes)

    def quantifier(self) -> tuple[int, bool]:
        """(least count, whether a quantifier was there) of what follows an atom."""
        char = self.peek()
        if char in ("*", "?"):
            least = 0
            self.take()
        elif char == "+":
            least = 1
            self.take()
        elif char == "{" and (m := _REPEAT.match(self.src, self.pos)) and m[0] != "{}":
            least = int(m[1] or 0)
            self.pos = m.end()
        else:
            return 1, False
        if self.peek() in ("?", "+"):  # lazy or possessive
            self.take()
        return least, True

    def atom(self) -> _Atom:
        char = self.take()
        if char == "(":
            return self.group()
        if char == "[":
            self.skip_class()
            return None
        if char == "\\":
            return self.escape()
        if char in ".^$":
            return None
        return char

    def skip_class(self) -> None:
        if self.peek() == "^":
            self.take()
        if self.peek() == "]":  # a "]" first is a member
            self.take()
        while self.peek() not in ("", "]"):
            self.take(2 if self.peek() == "\\" else 1)
        self.take()

    def escape(self) -> str | None:
        char = self.take()
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char]
        if char in _HEX_ESCAPES:
            return chr(int(self.take(_HEX_ESCAPES[char]), 16))
        if char == "N":  # \N{NAME}
            self.skip_to("}")
            return None
        if char == "0":  # octal: up to two more digits
            for _ in range(2):
                if self.next_in(_OCTAL):
                    self.take()
            return None
        if char in _DIGITS:  # a group reference, or an octal escape of three digits
            if self.next_in(_DIGITS):
                second = self.take()
                if char in _OCTAL and second in _OCTAL and self.next_in(_OCTAL):
                    self.take()
            return None
        if char.isalnum() or not char:  # classes (\d \w \s ...) and anchors (\b \A \Z ...)
            return None
        return char

    def group(self) -> _Atom:
        if self.peek() != "?":
            return self.closed(_Group(self.alternatives()))
        self.take()
        kind = self.peek()
        if kind == "P":
            self.take()
            if self.take() == "=":  # (?P=name): a back reference
                self.skip_to(")")
                return None
            self.skip_to(">")
            return self.closed(_Group(self.alternatives()))
        if kind in (":", ">"):  # non-capturing, atomic
            self.take()
            return self.closed(_Group(self.alternatives()))
        if kind == "#":
            self.skip_to(")")
            return None
        if kind in ("=", "!") or (kind == "<" and self.peek(1) in ("=", "!")):  # lookaround
            self.take(1 if kind != "<" else 2)
            self.closed(_Group(self.alternatives()))
            return None
        if kind == "(":  # (?(group)yes|no)
            self.skip_to(")")
            self.closed(_Group(self.alternatives()))
            return None
        flags = _FLAGS.match(self.src, self.pos)
        if flags is None:
            raise _Unreadable(f"group at {self.pos}")
        self.pos = flags.end()
        on, off, end = flags[1], flags[2] or "", flags[3]
        if "x" in on + off or (end == ")" and "i" in on):
            raise _Unreadable("verbose or global ignore-case flags")
        if end == ")":  # global flags that change no literal
            return None
        return self.closed(_Group(self.alternatives(), "i" in on))

    def closed(self, group: _Group) -> _Group:
        if self.take() != ")":
            raise _Unreadable(f"unbalanced group before {self.pos}")
        return group


class _Literals:
    """The requirements of one sequence: each holds in every match of it."""

    def __init__(self) -> None:
        self.options: list[frozenset[str]] = []
        self.run: list[str] = []

    def flush(self) -> None:
        if self.run:
            self.options.append(frozenset({"".join(self.run)}))
            self.run.clear()

    def add(self, nodes: Sequence[_Node], ignorecase: bool) -> None:
        for atom, least, repeated in nodes:
            if isinstance(atom, str) and not ignorecase and least:
                self.run.append(atom)
                if repeated:  # what follows a repeat is not next to its first copy
                    self.flush()
            elif isinstance(atom, _Group) and least:
                inner = ignorecase or atom.ignorecase
                if len(atom.alternatives) == 1 and not repeated:
                    self.add(atom.alternatives[0], inner)  # its text is part of this sequence
                    continue
                self.flush()
                found = _requirement(atom.alternatives, inner)
                if found:
                    self.options.append(found)
            else:
                self.flush()

    def best(self) -> frozenset[str] | None:
        """The requirement with the longest shortest literal (then the fewest literals)."""
        self.flush()
        if not self.options:
            return None
        return max(self.options, key=lambda o: (min(map(len, o)), -len(o)))


def _requirement(alternatives: Sequence[Sequence[_Node]], ignorecase: bool
                 ) -> frozenset[str] | None:
    """Literals one of which every match holds: each alternative's best, if each has one."""
    found = []
    for sequence in alternatives:
        literals = _Literals()
        literals.add(sequence, ignorecase)
        best = literals.best()
        if best is None:
            return None
        found.append(best)
    return frozenset[str]().union(*found)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Literal strings one of which every match of `pattern` contains; None when the parser
    knows of none (the pattern then has to run on every line)."""
    reader = _Reader(pattern)
    try:
        alternatives = reader.alternatives()
    except (_Unreadable, ValueError):
        return None
    if reader.pos != len(pattern):
        return None
    return _requirement(alternatives, False)


class _Patterned(Protocol):
    """What the prefilter needs of a catalog entry: per pattern, its required literals."""

    @property
    def literals(self) -> tuple[frozenset[str], ...]: ...


@dataclass(frozen=True)
class Prefilter:
    """Catalog entries indexed by literal: each literal -> the (entry, pattern) pairs it gates.

    Patterns with no literal (`always`) are tried on every line.
    """

    by_literal: dict[str, tuple[tuple[int, int], ...]]
    always: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, entries: Sequence[_Patterned]) -> Prefilter:
        by_literal: dict[str, list[tuple[int, int]]] = defaultdict(list)
        always: list[tuple[int, int]] = []
        for ei, entry in enumerate(entries):
            for pi, literals in enumerate(entry.literals):
                if not literals:
                    always.append((ei, pi))
                for literal in literals:
                    by_literal[literal].append((ei, pi))
        return cls({k: tuple(v) for k, v in by_literal.items()}, tuple(always))

    def candidates(self, text: str, ends: list[int]) -> dict[int, list[tuple[int, list[int]]]]:
        """Line index -> [(entry index, [pattern indexes])], both sorted, for the lines of
        `text` (ending at `ends`) that hold a literal, and every line when a pattern has none."""
        hits: dict[int, set[tuple[int, int]]] = defaultdict(set)
        for literal, pairs in self.by_literal.items():
            for index in lines_holding(text, ends, literal):
                hits[index].update(pairs)
        if self.always:
            for index in range(len(ends) + 1):
                hits[index].update(self.always)
        result: dict[int, list[tuple[int, list[int]]]] = {}
        for index, found in hits.items():
            by_entry: dict[int, list[int]] = defaultdict(list)
            for ei, pi in sorted(found):
                by_entry[ei].append(pi)
            result[index] = sorted(by_entry.items())
        return result
