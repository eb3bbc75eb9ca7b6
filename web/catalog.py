"""The hint catalog as the panel shows it, and hints for a log that was recorded without any.

The catalog is data (refinery_lib/data/hints.yaml) owned by `refinery_lib.hint_catalog`, which
validates it (catalog_as_json); logs are matched by `refinery_lib.hints.match_log`. Without
them, or with a broken catalog, this reads the YAML itself, so the panel keeps working with
plain patterns.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any

from refinery_lib.errors import RefineryError

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "refinery_lib" / "data" / "hints.yaml"
FIELDS = ("id", "category", "patterns", "dnf", "apt", "steps", "note")

_cache: dict[tuple[str, float], list[dict[str, Any]]] = {}
#: the normalised catalog per file version: pages and APIs ask for it on every request
_loaded: dict[tuple[str, int, int], list[dict[str, Any]]] = {}


def version(path: Path | None = None) -> tuple[str, int, int] | None:
    """The catalog file's version: its path, mtime and size (None when it cannot be read)."""
    try:
        st = os.stat(path or DEFAULT_PATH)
    except OSError:
        return None
    return (os.path.abspath(path or DEFAULT_PATH), st.st_mtime_ns, st.st_size)


def load(path: Path | None = None) -> list[dict[str, Any]]:
    """Catalog entries as plain dicts with every field present; [] when there is no catalog.
    Read and normalised once per version (mtime, size) of the file."""
    key = version(path)
    if key is not None and key in _loaded:
        return list(_loaded[key])
    entries = _load(path)
    if key is not None:
        _loaded.clear()
        _loaded[key] = entries
    return list(entries)


def _load(path: Path | None) -> list[dict[str, Any]]:
    try:
        from refinery_lib import hint_catalog  # the owner's loader validates and expands patterns

        return [normalize(e) for e in hint_catalog.catalog_as_json(path)]
    except (ImportError, AttributeError):
        pass
    except RefineryError as exc:  # a broken catalog must not take the panel down
        log.warning("hint catalog: %s; reading the YAML as it is", exc)
    return _load_yaml(path or DEFAULT_PATH)


def match_log(text: str, path: Path | None, entries: list[dict[str, Any]]) -> list[dict]:
    """Hints for a log's text, shaped like the ones builds record."""
    try:
        from refinery_lib import hints

        return [h.to_json() for h in hints.match_log(text, path)]
    except (ImportError, AttributeError):
        pass
    except RefineryError as exc:
        log.warning("hint matching: %s; using the plain patterns", exc)
    return match_text(entries, text)


def _load_yaml(path: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        mtime = path.stat().st_mtime
    except OSError:
        return []
    key = (str(path), mtime)
    if key not in _cache:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        if isinstance(data, dict):  # {hints: [...]} as well as a bare list
            data = data.get("hints") or data.get("entries") or []
        _cache.clear()
        _cache[key] = [normalize(e) for e in data if isinstance(e, dict)]
    return _cache[key]


def normalize(entry: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        entry = dataclasses.asdict(entry)
    elif not isinstance(entry, dict):
        entry = {f: getattr(entry, f, None) for f in FIELDS}
    out = {
        "id": str(entry.get("id") or ""),
        "category": str(entry.get("category") or ""),
        "patterns": [getattr(p, "pattern", p) for p in entry.get("patterns") or []],
        "dnf": [str(p) for p in entry.get("dnf") or []],
        "apt": [str(p) for p in entry.get("apt") or []],
        "steps": [[str(a) for a in s] for s in entry.get("steps") or [] if isinstance(s, list)],
        "note": str(entry.get("note") or ""),
        "dnf_repos": [str(r) for r in entry.get("dnf_repos") or []],
    }
    return out


def search(entries: list[dict[str, Any]], query: str = "", category: str = "") -> list[dict]:
    """Entries whose text (id, category, patterns, packages, steps, note) has every word."""
    words = [w.lower() for w in (query or "").split()]
    found = []
    for e in entries:
        if category and e["category"] != category:
            continue
        text = " ".join([e["id"], e["category"], e["note"], *e["patterns"], *e["dnf"], *e["apt"],
                         *(" ".join(s) for s in e["steps"])]).lower()
        if all(w in text for w in words):
            found.append(e)
    return found


def match_text(entries: list[dict[str, Any]], text: str, limit: int = 10) -> list[dict]:
    """Plain first-match of each entry's patterns: the fallback without the hints module."""
    hits = []
    lines = text.splitlines()
    for e in entries:
        for pat in e["patterns"]:
            try:
                rx = re.compile(pat)
            except re.error:
                continue
            for no, line in enumerate(lines, 1):
                if rx.search(line):
                    hits.append({**{k: e[k] for k in ("id", "category", "dnf", "apt", "steps",
                                                        "note")},
                                 "line_no": no, "line": line[:500]})
                    break
            else:
                continue
            break
        if len(hits) >= limit:
            break
    return hits
