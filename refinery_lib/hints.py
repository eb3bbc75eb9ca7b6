"""The hint catalog: build-log patterns -> system packages, recipe steps and Python deps.

The catalog is data (`data/hints.yaml`); this module loads and validates it, scans a build log
line by line and turns the matching entries into `Hint`s, and folds hints into a recipe.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import yaml
from packaging.utils import canonicalize_name

from .errors import ConfigError

try:  # the regex parser, to find the literal text every match of a pattern must contain
    from re import _parser as _sre_parser
except ImportError:  # pragma: no cover - other Python versions
    _sre_parser = None

DEFAULT_CATALOG = Path(__file__).resolve().parent / "data" / "hints.yaml"
CATEGORIES = frozenset(
    {
        "compiler",
        "headers",
        "build-tool",
        "rust",
        "ai-ml",
        "fortran",
        "s390x",
        "cross",
        # matched on the log of a build that succeeded: what it was built without
        "advice",
        "python-dep",
        "other",
    }
)
REPOS = frozenset({"crb", "epel"})
#: lines are matched up to this many characters (error lines are short; compile commands are not)
MAX_LINE = 8192
#: the text of a hint's line is kept up to this many characters
MAX_HINT_LINE = 1000
#: a log file is read in blocks of about this many bytes (whole lines)
CHUNK_BYTES = 4 << 20
#: every pattern must contain literal text of this length outside optional parts (prefilter)
MIN_TRIGGER = 3

_REQUIRED = ("id", "category", "patterns", "dnf", "apt", "steps", "note")
_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PACKAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")
_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Shorthand keys of an entry, each a list of regex fragments, expanded into full patterns:
# the wording of gcc/clang, GNU ld, sh/Python/setuptools/meson, pkg-config/meson, CMake.
_EXPANSIONS: dict[str, tuple[str, ...]] = {
    "headers": (r"(?<![\w/.+-])(?:{x})['’\"]?:? (?:No such file or directory|file not found)",),
    "libs": (r"cannot find -l(?:{x})(?![\w.+-])",),
    "commands": (
        r"(?<![\w.+-])(?:{x}): (?:[Cc]ommand )?not found",
        r"No such file or directory: '(?:[^']*/)?(?:{x})'",
        r"command '(?:[^']*/)?(?:{x})' failed: No such file",
        r"unable to execute '(?:[^']*/)?(?:{x})': No such file",
        r"Program '?(?:{x})'? not found",
    ),
    "pkgconfig": (
        r"Package ['\"]?(?:{x})['\"]? was not found in the pkg-config search path",
        r"No package ['\"](?:{x})['\"] found",
        r"Package ['\"](?:{x})['\"], required by .*, not found",
        r"Dependency \"?(?:{x})\"? not found",
    ),
    "cmake": (
        r"Could not find a package configuration file provided by \"(?:{x})\"",
        r"By not providing \"Find(?:{x})\.cmake\"",
        # "-- Could NOT find X" is an optional package; the indented form is a CMake Error
        r"^[\s<>|]*Could NOT find (?:{x})\b",
    ),
}
_OPTIONAL = frozenset({"dnf_repos", "env", "captures", "fallback", "examples", *_EXPANSIONS})

# Import names whose distribution is called something else (checked longest dotted prefix first).
MODULE_TO_DIST: dict[str, str] = {
    "Cython": "cython",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "cv2": "opencv-python",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "skbuild": "scikit-build",
    "pkg_resources": "setuptools",
    "mesonbuild": "meson",
    "mesonpy": "meson-python",
    "google.protobuf": "protobuf",
    "poetry.core": "poetry-core",
    "pdm.backend": "pdm-backend",
    "Crypto": "pycryptodome",
    "Cryptodome": "pycryptodomex",
    "OpenSSL": "pyopenssl",
    "dateutil": "python-dateutil",
    "attr": "attrs",
    "bs4": "beautifulsoup4",
    "jwt": "pyjwt",
    "git": "gitpython",
    "serial": "pyserial",
    "usb": "pyusb",
    "zmq": "pyzmq",
    "gi": "pygobject",
    "cairo": "pycairo",
    "dbus": "dbus-python",
    "ldap": "python-ldap",
    "MySQLdb": "mysqlclient",
    "magic": "python-magic",
    "fitz": "pymupdf",
    "_cffi_backend": "cffi",
    "Levenshtein": "levenshtein",
    "sipbuild": "sip",
    "pyximport": "cython",
}


class CatalogError(ConfigError):
    """The hint catalog file is malformed; the message names the entry."""


@dataclass(frozen=True)
class CatalogEntry:
    """One validated catalog entry; `patterns` includes those expanded from shorthand keys."""

    id: str
    category: str
    patterns: tuple[str, ...]
    dnf: tuple[str, ...]
    apt: tuple[str, ...]
    steps: tuple[tuple[str, ...], ...]
    note: str
    dnf_repos: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    captures: tuple[tuple[str, str], ...] = ()
    fallback: bool = False
    examples: tuple[str, ...] = ()
    regexes: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    #: per pattern, literal strings one of which every match contains (empty: check every line)
    triggers: tuple[frozenset[str], ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "patterns": list(self.patterns),
            "dnf": list(self.dnf),
            "apt": list(self.apt),
            "dnf_repos": list(self.dnf_repos),
            "steps": [list(s) for s in self.steps],
            "env": dict(self.env),
            "note": self.note,
            "captures": dict(self.captures),
            "fallback": self.fallback,
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class Hint:
    """A catalog entry that matched a build log, at its first matching line (1-based)."""

    id: str
    category: str
    line_no: int
    line: str
    dnf: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    steps: tuple[tuple[str, ...], ...] = ()
    note: str = ""
    captures: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    dnf_repos: tuple[str, ...] = ()

    def __hash__(self) -> int:  # the dict fields are not hashable; these identify a hint
        return hash((self.id, self.line_no, self.line))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "line_no": self.line_no,
            "line": self.line,
            "dnf": list(self.dnf),
            "apt": list(self.apt),
            "steps": [list(s) for s in self.steps],
            "note": self.note,
            "captures": dict(self.captures),
            "env": dict(self.env),
            "dnf_repos": list(self.dnf_repos),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hint:
        return cls(
            id=str(data["id"]),
            category=str(data["category"]),
            line_no=int(data["line_no"]),
            line=str(data["line"]),
            dnf=tuple(data.get("dnf", ())),
            apt=tuple(data.get("apt", ())),
            steps=tuple(tuple(s) for s in data.get("steps", ())),
            note=str(data.get("note", "")),
            captures=dict(data.get("captures", {})),
            env=dict(data.get("env", {})),
            dnf_repos=tuple(data.get("dnf_repos", ())),
        )


# ------------------------------------------------------------------ loading and validation


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The validated catalog at `path` (default: the packaged one), cached per path and mtime."""
    p = Path(path or DEFAULT_CATALOG).resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise CatalogError(f"hint catalog {p} cannot be read: {exc}") from exc
    return list(_load(str(p), mtime).entries)


@dataclass(frozen=True)
class _Compiled:
    """Entries plus an index from trigger literal to the (entry, pattern) pairs it gates."""

    entries: tuple[CatalogEntry, ...]
    by_literal: Mapping[str, tuple[tuple[int, int], ...]]
    always: tuple[tuple[int, int], ...]


@functools.lru_cache(maxsize=16)
def _load(path: str, _mtime: int) -> _Compiled:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"hint catalog {path} cannot be parsed: {exc}") from exc
    if not isinstance(data, list):
        raise CatalogError(f"hint catalog {path} must be a list of entries")
    entries: list[CatalogEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(data):
        entry = _entry(raw, f"{path} entry #{index + 1}")
        if entry.id in seen:
            raise CatalogError(f"{path}: duplicate hint id {entry.id!r}")
        seen.add(entry.id)
        entries.append(entry)
    return _compile(entries)


def _entry(raw: Any, where: str) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: an entry must be a mapping")
    if isinstance(raw.get("id"), str):
        where = f"{where} ({raw['id']})"
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise CatalogError(f"{where}: missing key(s) {', '.join(missing)}")
    unknown = set(raw) - set(_REQUIRED) - _OPTIONAL
    if unknown:
        raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    hid = raw["id"]
    if not isinstance(hid, str) or not _ID_RE.match(hid):
        raise CatalogError(f"{where}: id must be kebab-case, got {hid!r}")
    if raw["category"] not in CATEGORIES:
        raise CatalogError(f"{where}: unknown category {raw['category']!r}")
    note = raw["note"]
    if not isinstance(note, str) or not note.strip():
        raise CatalogError(f"{where}: note must be non-empty text")

    patterns = list(_strings(raw["patterns"], where, "patterns"))
    for key, templates in _EXPANSIONS.items():
        for fragment in _strings(raw.get(key, []), where, key):
            patterns.extend(t.replace("{x}", fragment) for t in templates)
    if not patterns:
        raise CatalogError(f"{where}: no patterns")
    regexes = []
    triggers = []
    for pattern in patterns:
        try:
            regexes.append(re.compile(pattern))
        except re.error as exc:
            raise CatalogError(f"{where}: bad regex {pattern!r}: {exc}") from exc
        trig = _pattern_triggers(pattern)
        if _sre_parser is not None and min(map(len, trig or ()), default=0) < MIN_TRIGGER:
            raise CatalogError(
                f"{where}: regex {pattern!r} needs literal text of at least {MIN_TRIGGER} "
                "characters outside optional or case-insensitive parts"
            )
        triggers.append(trig or frozenset())

    dnf = _strings(raw["dnf"], where, "dnf")
    apt = _strings(raw["apt"], where, "apt")
    for name in (*dnf, *apt):
        if not _PACKAGE_RE.match(name):
            raise CatalogError(f"{where}: bad package name {name!r}")
    repos = _strings(raw.get("dnf_repos", []), where, "dnf_repos")
    if set(repos) - REPOS:
        raise CatalogError(f"{where}: dnf_repos must be among {sorted(REPOS)}")
    steps_raw = raw["steps"]
    if not isinstance(steps_raw, list):
        raise CatalogError(f"{where}: steps must be a list of argument lists")
    steps = tuple(_strings(s, where, "steps") for s in steps_raw)
    if any(not s for s in steps):
        raise CatalogError(f"{where}: a step must be a non-empty argument list")
    env = _mapping(raw.get("env", {}), where, "env")
    fixed = _mapping(raw.get("captures", {}), where, "captures")
    examples = _strings(raw.get("examples", []), where, "examples")
    fallback = raw.get("fallback", False)
    if not isinstance(fallback, bool):
        raise CatalogError(f"{where}: fallback must be true or false")

    # every placeholder in the note and steps must be filled whichever pattern matched
    wanted = set(_PLACEHOLDER_RE.findall(note))
    for step in steps:
        for arg in step:
            wanted.update(_PLACEHOLDER_RE.findall(arg))
    for rx in regexes:
        have = set(rx.groupindex) | {k for k, _ in fixed}
        if "module" in have:
            have.add("dep")
        if wanted - have:
            raise CatalogError(
                f"{where}: pattern {rx.pattern!r} does not capture {sorted(wanted - have)} "
                "used in the note or steps"
            )

    return CatalogEntry(
        id=hid,
        category=raw["category"],
        patterns=tuple(patterns),
        dnf=dnf,
        apt=apt,
        steps=steps,
        note=note.strip(),
        dnf_repos=repos,
        env=env,
        captures=fixed,
        fallback=fallback,
        examples=examples,
        regexes=tuple(regexes),
        triggers=tuple(triggers),
    )


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CatalogError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(value)


def _mapping(value: Any, where: str, key: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CatalogError(f"{where}: {key} must map names to strings (quote numbers)")
    return tuple(value.items())


def _pattern_triggers(pattern: str) -> frozenset[str] | None:
    """Literal strings one of which every match of `pattern` contains (None: unknown)."""
    if _sre_parser is None:
        return None
    try:
        return _triggers(_sre_parser.parse(pattern), False)
    except Exception:  # a private parser: never fail loading because of it
        return None


def _triggers(items: Any, ignorecase: bool) -> frozenset[str] | None:
    c = _sre_parser  # its opcode constants (LITERAL, BRANCH, ...) live in the module
    options: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            options.append(frozenset({"".join(run)}))
            run.clear()

    for op, av in items:
        if op is c.LITERAL and not ignorecase:
            run.append(chr(av))
            continue
        flush()
        found: frozenset[str] | None = None
        if op is c.SUBPATTERN:
            found = _triggers(av[3], ignorecase or bool(av[1] & re.IGNORECASE))
        elif op is c.BRANCH:
            alternatives = [_triggers(alt, ignorecase) for alt in av[1]]
            if all(alternatives):
                found = frozenset().union(*alternatives)  # type: ignore[arg-type]
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
            if av[0] >= 1:
                found = _triggers(av[2], ignorecase)
        if found:
            options.append(found)
    flush()
    if not options:
        return None
    return max(options, key=lambda o: (min(map(len, o)), -len(o)))


def _compile(entries: Sequence[CatalogEntry]) -> _Compiled:
    by_literal: dict[str, list[tuple[int, int]]] = defaultdict(list)
    always: list[tuple[int, int]] = []
    for ei, entry in enumerate(entries):
        for pi in range(len(entry.regexes)):
            trig = entry.triggers[pi] if pi < len(entry.triggers) else frozenset()
            if not trig:
                always.append((ei, pi))
            for literal in trig:
                by_literal[literal].append((ei, pi))
    return _Compiled(tuple(entries), {k: tuple(v) for k, v in by_literal.items()}, tuple(always))


# ------------------------------------------------------------------ matching


def match_log(log: str | Path, catalog: Sequence[CatalogEntry] | Path | None = None) -> list[Hint]:
    """Hints for a build log: a Path is read from disk (in blocks), a str is the log's text.

    One hint per matching entry, at its first matching line (1-based), ordered by line number.
    A fallback entry is not reported on a line that a specific entry also matches. Only lines
    holding an entry's trigger literal are run through its regexes.
    """
    if catalog is None or isinstance(catalog, Path):
        p = Path(catalog or DEFAULT_CATALOG).resolve()
        compiled = _load(str(p), p.stat().st_mtime_ns)
    else:
        compiled = _compile(tuple(catalog))
    entries = compiled.entries
    chunks = _chunks_of_file(log) if isinstance(log, Path) else _chunks_of_text(log)

    found: dict[str, Hint] = {}
    pending_fallbacks = sum(1 for e in entries if e.fallback)
    first_line = 1
    for text in chunks:
        if "\x1b" in text:
            text = _ANSI_RE.sub("", text)
        ends = [m.start() for m in re.finditer("\n", text)]
        for index, pairs in sorted(_candidates(text, ends, compiled).items()):
            start = ends[index - 1] + 1 if index else 0
            stop = ends[index] if index < len(ends) else len(text)
            line = text[start:stop].rstrip("\r")[:MAX_LINE]
            line_no = first_line + index
            specific_hit = False
            fallbacks: list[tuple[CatalogEntry, re.Match[str]]] = []
            for ei, pis in pairs:
                entry = entries[ei]
                if entry.id in found and (entry.fallback or not pending_fallbacks):
                    continue
                m = _search(entry, pis, line)
                if m is None:
                    continue
                if entry.fallback:
                    fallbacks.append((entry, m))
                    continue
                specific_hit = True
                if entry.id not in found:
                    found[entry.id] = _hint(entry, m, line_no, line)
            if not specific_hit:
                for entry, m in fallbacks:
                    found[entry.id] = _hint(entry, m, line_no, line)
                    pending_fallbacks -= 1
        first_line += len(ends) + (0 if text.endswith("\n") or not text else 1)
    order = {e.id: i for i, e in enumerate(entries)}
    return sorted(found.values(), key=lambda h: (h.line_no, order[h.id]))


def _candidates(
    text: str, ends: list[int], compiled: _Compiled
) -> dict[int, list[tuple[int, list[int]]]]:
    """Line index -> [(entry index, [pattern indexes])] for lines holding a trigger literal."""
    hits: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for literal, pairs in compiled.by_literal.items():
        i = text.find(literal)
        while i >= 0:
            index = bisect.bisect_left(ends, i)
            hits[index].update(pairs)
            if index >= len(ends):
                break
            i = text.find(literal, ends[index] + 1)
    if compiled.always:
        for index in range(len(ends) + 1):
            hits[index].update(compiled.always)
    result: dict[int, list[tuple[int, list[int]]]] = {}
    for index, pairs in hits.items():
        by_entry: dict[int, list[int]] = defaultdict(list)
        for ei, pi in sorted(pairs):
            by_entry[ei].append(pi)
        result[index] = sorted(by_entry.items())
    return result


def _search(entry: CatalogEntry, pattern_indexes: list[int], line: str) -> re.Match[str] | None:
    for pi in pattern_indexes:
        m = entry.regexes[pi].search(line)
        if m:
            return m
    return None


def _chunks_of_file(path: Path) -> Iterator[str]:
    """Blocks of whole lines (split on b"\\n" only, so line numbers agree with `sed -n`).
    Memory stays O(CHUNK_BYTES): of a line longer than that only its first CHUNK_BYTES are
    kept (a line is matched on its first MAX_LINE characters anyway)."""
    with path.open("rb") as fh:
        rest = b""
        long_line = False
        while True:
            block = fh.read(CHUNK_BYTES)
            if not block:
                if rest:
                    yield rest.decode("utf-8", errors="replace")
                return
            if long_line:  # the rest of an over-long line is skipped, up to its end
                end = block.find(b"\n")
                if end < 0:
                    continue
                block, long_line = block[end:], False
            block = rest + block
            cut = block.rfind(b"\n")
            if cut < 0:
                rest, long_line = block[:CHUNK_BYTES], len(block) > CHUNK_BYTES
                continue
            rest = block[cut + 1 :]
            yield block[: cut + 1].decode("utf-8", errors="replace")


def _chunks_of_text(text: str) -> Iterator[str]:
    if text:
        yield text


def _hint(entry: CatalogEntry, m: re.Match[str], line_no: int, line: str) -> Hint:
    captures = dict(entry.captures)
    captures.update({k: v for k, v in m.groupdict().items() if v is not None})
    if "module" in captures and "dep" not in captures:
        captures["dep"] = distribution_for_module(captures["module"])
    return Hint(
        id=entry.id,
        category=entry.category,
        line_no=line_no,
        line=line.strip()[:MAX_HINT_LINE],
        dnf=entry.dnf,
        apt=entry.apt,
        steps=tuple(tuple(_fill(a, captures) for a in step) for step in entry.steps),
        note=_fill(entry.note, captures),
        captures=captures,
        env=dict(entry.env),
        dnf_repos=entry.dnf_repos,
    )


def _fill(text: str, captures: Mapping[str, str]) -> str:
    return _PLACEHOLDER_RE.sub(lambda m: captures.get(m[1], m[0]), text)


def distribution_for_module(module: str) -> str:
    """The PEP 503 name of the distribution that most likely provides import name `module`."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        dist = MODULE_TO_DIST.get(".".join(parts[:n]))
        if dist:
            return canonicalize_name(dist)
    return canonicalize_name(parts[0])


# ------------------------------------------------------------------ using hints


def recipe_from_hints(hints: Iterable[Hint], family: Literal["dnf", "apt"]) -> dict[str, Any]:
    """System packages, recipe steps, env and (dnf) repositories from hints, deduplicated.

    Returns {"system_packages": [...], "recipe_steps": [[...]], "env": {...},
    "dnf_repos": [...]}; first-seen order is kept and env values for one variable are joined
    with spaces (e.g. two CFLAGS).
    """
    if family not in ("dnf", "apt"):
        raise ValueError(f"package family must be 'dnf' or 'apt', not {family!r}")
    packages: list[str] = []
    steps: list[list[str]] = []
    env: dict[str, str] = {}
    repos: list[str] = []
    for hint in hints:
        for name in hint.dnf if family == "dnf" else hint.apt:
            if name not in packages:
                packages.append(name)
        for step in hint.steps:
            if list(step) not in steps:
                steps.append(list(step))
        for key, value in hint.env.items():
            tokens = env[key].split() if key in env else []
            extra = [t for t in value.split() if t not in tokens]
            env[key] = " ".join(tokens + extra)
        if family == "dnf":
            repos.extend(r for r in hint.dnf_repos if r not in repos)
    return {"system_packages": packages, "recipe_steps": steps, "env": env, "dnf_repos": repos}


def python_deps_from_hints(hints: Iterable[Hint]) -> list[str]:
    """PEP 503 names of the Python distributions the hints say are missing, first-seen order."""
    deps: list[str] = []
    for hint in hints:
        dep = hint.captures.get("dep")
        if dep:
            name = canonicalize_name(dep)
            if name not in deps:
                deps.append(name)
    return deps


def catalog_as_json(catalog: Sequence[CatalogEntry] | Path | None = None) -> list[dict[str, Any]]:
    """The catalog as JSON-ready dicts (for the web panel's catalog page and /api/hints)."""
    entries = catalog if isinstance(catalog, Sequence) else load_catalog(catalog)
    return [e.to_json() for e in entries]


# ------------------------------------------------------------------ the line that says why

#: first_error_line reads this much of a log file from its start and as much from its end: a
#: build log can be hundreds of megabytes, and its error is near one end or the other
ERROR_WINDOW = CHUNK_BYTES
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
        if "\x1b" in text:
            text = _ANSI_RE.sub("", text)
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
    ends = [m.start() for m in re.finditer("\n", text)]
    hits: set[int] = set()
    for word in words:
        i = text.find(word)
        while i >= 0:
            index = bisect.bisect_left(ends, i)
            hits.add(index)
            if index >= len(ends):
                break
            i = text.find(word, ends[index] + 1)
    return sorted(hits)


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
