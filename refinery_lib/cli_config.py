"""Which config file a `refinery run` reads: the one named, else the nearest one found.

A project keeps its settings beside its code, the way ruff and cibuildwheel find theirs: a
`refinery.toml`, or a `[tool.refinery]` table in `pyproject.toml`, in the current folder or
the nearest parent holding one. The search stops at the root of the repository (a folder with
`.git`), so a config of an unrelated project further up is never picked up.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as cfg
from .errors import ConfigError

OWN_FILE = "refinery.toml"
PYPROJECT = "pyproject.toml"
#: the table of pyproject.toml that holds the refinery's settings
TOOL_TABLE = ("tool", "refinery")


@dataclass(frozen=True)
class ConfigSource:
    """A config file and how it was chosen (`--config`, `REFINERY_CONFIG` or `found`)."""

    path: Path
    how: str
    #: the table of a pyproject.toml holding the settings; () for a file of its own
    table: tuple[str, ...] = ()

    def load(self) -> dict[str, Any]:
        """The settings it holds, with the keys of config/config.yaml."""
        if not self.table:
            return cfg.load_file(self.path)
        data = _read_toml(self.path)
        for key in self.table:
            table = data.get(key)
            if not isinstance(table, dict):
                raise ConfigError(f"{self.path} has no [{'.'.join(self.table)}] table")
            data = table
        return data

    def describe(self) -> str:
        """One line for --verbose and for the header of refinery-config.yaml."""
        where = f" [{'.'.join(self.table)}]" if self.table else ""
        how = "found from the current folder" if self.how == "found" else f"from {self.how}"
        return f"{self.path}{where} ({how})"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} does not parse: {exc}") from exc


def _has_tool_table(path: Path) -> bool:
    """A pyproject.toml without [tool.refinery] belongs to the project only: skipped."""
    data: Any = _read_toml(path)
    for key in TOOL_TABLE:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def discover(start: Path) -> ConfigSource | None:
    """The nearest refinery.toml or pyproject.toml with [tool.refinery], from `start` up to
    the repository root or the file system root; in one folder refinery.toml wins."""
    start = start.resolve()
    for folder in (start, *start.parents):
        own = folder / OWN_FILE
        if own.is_file():
            return ConfigSource(own, "found")
        pyproject = folder / PYPROJECT
        if pyproject.is_file() and _has_tool_table(pyproject):
            return ConfigSource(pyproject, "found", TOOL_TABLE)
        if (folder / ".git").exists():
            return None
    return None


def find_config(explicit: str | None, how: str, cwd: Path) -> ConfigSource | None:
    """The file given by `--config` (or REFINERY_CONFIG: `how` says which), else one found."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{how} {explicit}: no such file")
        table = TOOL_TABLE if path.name == PYPROJECT else ()
        return ConfigSource(path.resolve(), how, table)
    return discover(cwd)
