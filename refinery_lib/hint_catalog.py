"""The hint catalog: loading and validating `data/hints.yaml` (or another catalog file).

A catalog is checked against `data/hints.schema.yaml` (JSON Schema), then for what a schema
cannot say: unique ids, regexes that compile and hold literal text for the prefilter, and
placeholders in the note and steps that every pattern fills. Shorthand keys (headers, libs,
commands, pkgconfig, cmake) are expanded into full patterns. A bad catalog raises
CatalogError, one line naming the file, the entry and the field. Loaded catalogs are cached
per path and modification time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import ConfigError
from .hint_prefilter import required_literals

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_CATALOG = DATA / "hints.yaml"
SCHEMA_FILE = DATA / "hints.schema.yaml"
#: every pattern must hold literal text this long outside optional parts (for the prefilter)
MIN_LITERAL = 3
#: libyaml's safe loader when PyYAML has it (a tenth of the pure-Python one's time), else that
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: a placeholder in a note or a step: `{name}`, filled from the captures of a match
PLACEHOLDER = re.compile(r"\{(\w+)\}")

# Shorthand keys of an entry, each a list of regex fragments, expanded into full patterns:
# the wording of gcc/clang, GNU ld, sh/Python/setuptools/meson, pkg-config/meson, CMake.
EXPANSIONS: dict[str, tuple[str, ...]] = {
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


class CatalogError(ConfigError):
    """The hint catalog file is malformed; the message names the entry and the field."""


@functools.cache
def schema() -> dict[str, Any]:
    """The catalog's JSON Schema (data/hints.schema.yaml)."""
    loaded: dict[str, Any] = yaml.load(SCHEMA_FILE.read_text(encoding="utf-8"), _YAML_LOADER)
    return loaded


#: the categories an entry may have (the schema's list)
CATEGORIES: frozenset[str] = frozenset(schema()["items"]["properties"]["category"]["enum"])


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
    literals: tuple[frozenset[str], ...] = field(default=(), repr=False, compare=False)

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


@dataclass(frozen=True, eq=False)
class Catalog:
    """A loaded catalog file: its validated entries, in file order."""

    path: Path
    entries: tuple[CatalogEntry, ...]


def open_catalog(path: Path | None = None) -> Catalog:
    """The validated catalog at `path` (default: the packaged one), cached per path and mtime."""
    p = Path(path or DEFAULT_CATALOG).resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise CatalogError(f"hint catalog {p} cannot be read: {exc}") from exc
    return _load(p, mtime)


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The entries of the validated catalog at `path` (default: the packaged one)."""
    return list(open_catalog(path).entries)


def catalog_as_json(catalog: Sequence[CatalogEntry] | Path | None = None) -> list[dict[str, Any]]:
    """The catalog as JSON-ready dicts (for the web panel's catalog page and /api/hints)."""
    entries = catalog if isinstance(catalog, Sequence) else load_catalog(catalog)
    return [e.to_json() for e in entries]


@functools.lru_cache(maxsize=16)
def _load(path: Path, _mtime: int) -> Catalog:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), _YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"hint catalog {path} cannot be parsed: {exc}") from exc
    if not isinstance(data, list):
        raise CatalogError(f"hint catalog {path} must be a list of entries")
    # imported here: every build step imports this module, few load a catalog
    from jsonschema import Draft202012Validator

    errors = list(Draft202012Validator(schema()).iter_errors(data))
    if errors:
        raise _schema_error(path, data, errors)
    entries: list[CatalogEntry] = []
    first: dict[str, int] = {}
    for index, raw in enumerate(data):
        where = _where(path, index, raw)
        if raw["id"] in first:
            raise CatalogError(f"{where}: id: duplicate hint id {raw['id']!r} "
                               f"(entry #{first[raw['id']] + 1} has it too)")
        first[raw["id"]] = index
        entries.append(_entry(raw, where))
    return Catalog(path, tuple(entries))


def _where(path: Path, index: int, raw: Any) -> str:
    name = f" ({raw['id']})" if isinstance(raw, dict) and isinstance(raw.get("id"), str) else ""
    return f"{path} entry #{index + 1}{name}"


def _schema_error(path: Path, data: list[Any], errors: list[ValidationError]) -> CatalogError:
    """One line for the first entry the schema rejects: the entry, the field, the problem."""
    from jsonschema.exceptions import best_match

    index = min(int(e.absolute_path[0]) for e in errors)
    error = best_match(e for e in errors if e.absolute_path[0] == index)
    where = _where(path, index, data[index])
    inside = list(error.absolute_path)[1:]
    fields = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inside).lstrip(".")
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return CatalogError(f"{where}: {', '.join(missing)}: missing (every entry has "
                            f"{', '.join(error.validator_value)})")
    if error.validator == "additionalProperties" and not fields:
        unknown = sorted(set(error.instance) - set(error.schema["properties"]))
        return CatalogError(f"{where}: {', '.join(unknown)}: unknown field (the fields are "
                            f"{', '.join(error.schema['properties'])})")
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    why = f" ({title})" if title else ""
    return CatalogError(f"{where}: {fields or 'entry'}: {error.message}{why}")


def _entry(raw: dict[str, Any], where: str) -> CatalogEntry:
    """An entry the schema accepted, its patterns expanded, compiled and checked."""
    sources = [("patterns", p) for p in raw["patterns"]]
    for key, templates in EXPANSIONS.items():
        for fragment in raw.get(key, []):
            sources.extend((key, t.replace("{x}", fragment)) for t in templates)
    if not sources:
        raise CatalogError(f"{where}: patterns: none, and no {', '.join(EXPANSIONS)} either")
    captures = tuple(raw.get("captures", {}).items())
    note = raw["note"].strip()
    wanted = set(PLACEHOLDER.findall(note))
    for step in raw["steps"]:
        for arg in step:
            wanted.update(PLACEHOLDER.findall(arg))
    regexes = []
    literals = []
    for key, pattern in sources:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise CatalogError(f"{where}: {key}: bad regex {pattern!r}: {exc}") from exc
        found = required_literals(pattern) or frozenset()
        if min(map(len, found), default=0) < MIN_LITERAL:
            raise CatalogError(
                f"{where}: {key}: regex {pattern!r} needs literal text of at least "
                f"{MIN_LITERAL} characters outside optional or case-insensitive parts"
            )
        # every placeholder in the note and steps must be filled whichever pattern matched
        have = set(rx.groupindex) | {k for k, _ in captures}
        if "module" in have:
            have.add("dep")
        if wanted - have:
            raise CatalogError(
                f"{where}: {key}: pattern {pattern!r} does not capture "
                f"{sorted(wanted - have)} used in the note or steps"
            )
        regexes.append(rx)
        literals.append(found)
    return CatalogEntry(
        id=raw["id"],
        category=raw["category"],
        patterns=tuple(p for _, p in sources),
        dnf=tuple(raw["dnf"]),
        apt=tuple(raw["apt"]),
        steps=tuple(tuple(step) for step in raw["steps"]),
        note=note,
        dnf_repos=tuple(raw.get("dnf_repos", ())),
        env=tuple(raw.get("env", {}).items()),
        captures=captures,
        fallback=raw.get("fallback", False),
        examples=tuple(raw.get("examples", ())),
        regexes=tuple(regexes),
        literals=tuple(literals),
    )
