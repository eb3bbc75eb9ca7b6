"""Missing build dependencies: Python dependencies a build was missing, for the next plan to add.

A failed build whose log says a Python package was missing (`No matching distribution found
for X` while installing build dependencies, `ModuleNotFoundError: No module named 'X'`)
records X here; the plan checkpoint takes this file as an input, so the next evaluation plans X
(bounded by the expansion depth, cycles dropped) and makes it a dependency of the parent's build.
"""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

from .files import exclusive, read_json, write_json


def load(path: Path) -> dict[str, list[str]]:
    return read_json(path) if path.exists() else {}


def add(path: Path, parent: str, deps: list[str]) -> bool:
    """Record that `parent` needs `deps`; True when something new was recorded."""
    parent = canonicalize_name(parent)
    new: list[str] = [canonicalize_name(d) for d in deps if canonicalize_name(d) != parent]
    if not new:
        return False
    with exclusive(path.with_suffix(".lock")):
        data = load(path)
        known = data.get(parent, [])
        merged = list(dict.fromkeys(known + new))
        if merged == known:
            return False
        data[parent] = merged
        write_json(path, data)
    return True
