"""Hints for a build log: which catalog entries match which of its lines, and what they ask.

`match_log` scans a log (a file in blocks of whole lines, or text) and turns the entries that
match into `Hint`s, one per entry at its first matching line; only the lines that hold one of
a pattern's literals (`hint_prefilter`) are run through its regex. `recipe_from_hints` and
`python_deps_from_hints` fold hints into what a retry installs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.utils import canonicalize_name

from .hint_catalog import PLACEHOLDER, Catalog, CatalogEntry, open_catalog
from .hint_prefilter import Prefilter
from .text_lines import line_at, line_ends, without_colours

#: lines are matched up to this many characters (error lines are short; compile commands are not)
MAX_LINE = 8192
#: the text of a hint's line is kept up to this many characters
MAX_HINT_LINE = 1000
#: a log file is read in blocks of about this many bytes (whole lines)
CHUNK_BYTES = 4 << 20

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


def match_log(log: str | Path, catalog: Sequence[CatalogEntry] | Path | None = None) -> list[Hint]:
    """Hints for a build log: a Path is read from disk (in blocks), a str is the log's text.

    One hint per matching entry, at its first matching line (1-based), ordered by line number.
    A fallback entry is not reported on a line that a specific entry also matches. Only lines
    holding one of a pattern's literals are run through its regex.
    """
    if catalog is None or isinstance(catalog, Path):
        cataloged = open_catalog(catalog)
        entries, prefilter = cataloged.entries, _prefilter(cataloged)
    else:
        entries = tuple(catalog)
        prefilter = Prefilter.of(entries)
    chunks = _chunks_of_file(log) if isinstance(log, Path) else _chunks_of_text(log)

    found: dict[str, Hint] = {}
    pending_fallbacks = sum(1 for e in entries if e.fallback)
    first_line = 1
    for raw in chunks:
        text = without_colours(raw)
        ends = line_ends(text)
        for index, pairs in sorted(prefilter.candidates(text, ends).items()):
            line = line_at(text, ends, index).rstrip("\r")[:MAX_LINE]
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


@functools.lru_cache(maxsize=16)
def _prefilter(catalog: Catalog) -> Prefilter:
    return Prefilter.of(catalog.entries)


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
    return PLACEHOLDER.sub(lambda m: captures.get(m[1], m[0]), text)



def distribution_for_module(module: str) -> str:
    """The PEP 503 name of the distribution that most likely provides import name `module`."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        dist = MODULE_TO_DIST.get(".".join(parts[:n]))
        if dist:
            return canonicalize_name(dist)
    return canonicalize_name(parts[0])



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
