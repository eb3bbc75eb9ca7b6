"""Config files (TOML, JSON, YAML) and the CLI flags, merged into one Snakemake config."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
#: where an installed wheel holds the workflow (package data: pyproject's refinery_lib._workflow)
PACKAGED = Path(__file__).resolve().parent / "_workflow"


def workflow_dir() -> Path:
    """The folder holding the Snakefile that `refinery` runs: the installed package's copy,
    else the checkout this module sits in (an editable install, or a run from source)."""
    for folder in (PACKAGED, REPO):
        if (folder / "Snakefile").is_file():
            return folder
    raise ConfigError(
        f"no Snakefile in {PACKAGED} or {REPO}: this installation of the refinery is "
        "incomplete; reinstall it (pip install s390x-wheel-refinery, or pip install . from "
        "a checkout)"
    )


def defaults() -> dict[str, Any]:
    with open(workflow_dir() / "config" / "config.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_file(path: Path) -> dict[str, Any]:
    """A user config in TOML, JSON or YAML (by extension)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"config {path} does not parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top")
    return data


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge, everything else in `extra` replaces."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(config: dict[str, Any]) -> None:
    import jsonschema

    with open(workflow_dir() / "config" / "schemas" / "config.schema.yaml", encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ConfigError(f"config error at {where}: {exc.message}") from exc
