"""`refinery verify`: rebuild every built wheel from a clean folder and compare the bytes."""

from __future__ import annotations

import dataclasses
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .aggregate import closure_check
from .build import build_package
from .errors import BuildError
from .files import read_json, write_json
from .models import Outcome, Plan
from .overrides import PackageOverride
from .settings import Settings
from .smoke import smoke_import


def first_difference(a: Path, b: Path) -> str:
    """The first member whose content differs between two wheels (or that only one has)."""
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        names_a, names_b = set(za.namelist()), set(zb.namelist())
        # package files before *.dist-info: RECORD differs only because a file did
        for name in sorted(names_a | names_b, key=lambda n: (".dist-info/" in n, n)):
            if name not in names_a or name not in names_b:
                return f"{name} (only in {'the original' if name in names_a else 'the rebuild'})"
            if za.read(name) != zb.read(name):
                return name
    return "(zip metadata only: same files, different archive bytes)"


def replay_overrides(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-package overrides that rebuild what a manifest recorded: versions, variants,
    recipes and build-dependency versions."""
    overrides: dict[str, dict[str, Any]] = {}
    for e in manifest.get("entries", []):
        if e["status"] not in ("built", "cached", "fetched", "reused") or not e["version"]:
            continue
        meta = e.get("metadata", {})
        o: dict[str, Any] = {"version": e["version"]}
        if e["status"] in ("built", "cached"):
            if meta.get("variant"):
                o["variants"] = [meta["variant"]]
            if meta.get("build_deps"):
                o["build_constraints"] = [
                    f"{k}=={v}" for k, v in sorted(meta["build_deps"].items())
                ]
            for rec in meta.get("recipes", []):
                o.setdefault("system_packages", []).extend(rec.get("system_packages", []))
                o.setdefault("recipe_steps", []).extend(rec.get("recipe_steps", []))
        overrides[e["name"]] = o
    return overrides


def verify(settings: Settings, rebuild: bool = True) -> dict[str, Any]:
    """Rebuild each built entry in a scratch cache; record reproducible true/false per entry."""
    manifest = read_json(settings.paths.manifest)
    plan = Plan.from_file(settings.paths.plan)
    overrides = {**settings.overrides}
    for name, o in replay_overrides(manifest).items():
        # the manifest's versions, variants and recipes over the package's own override
        overrides[name] = PackageOverride.from_config(
            name, {**settings.override(name).to_json(), **o}, "the manifest's replay")
    results = []
    for entry in manifest["entries"]:
        if not rebuild or entry["status"] not in ("built", "cached"):
            continue
        meta = entry.get("metadata", {})
        node = plan.find(entry["name"], meta.get("fallback_from") or entry["version"])
        sdist = settings.paths.downloads / meta.get("sdist", "")
        res: dict[str, Any] = {"name": entry["name"], "version": entry["version"]}
        if node is None or not meta.get("sdist") or not sdist.exists():
            res.update(reproducible=None, detail="sdist or plan node not found in the cache")
            entry["reproducible"] = None
            results.append(res)
            continue
        with tempfile.TemporaryDirectory(prefix="refinery-verify-") as tmp:
            scratch = dataclasses.replace(
                settings,
                paths=dataclasses.replace(
                    settings.paths,
                    cache=Path(tmp) / "cache",
                    output=Path(tmp) / "out",
                    history_db=settings.paths.history_db,
                ),
                overrides=overrides,
            )
            # the scratch cache still finds dependencies' wheels through the real cache
            node = dataclasses.replace(node, version=entry["version"], key=node.key)
            try:
                outcome: Outcome = build_package(node, sdist, scratch)
            except BuildError as exc:
                res.update(reproducible=False, detail=f"rebuild failed: {exc}")
                entry["reproducible"] = False
                results.append(res)
                continue
            rebuilt = Path(outcome.path)
            same = outcome.sha256 == entry["sha256"]
            res.update(reproducible=same, original=entry["sha256"], rebuilt=outcome.sha256)
            if not same:
                original = settings.paths.output / entry["wheel"]
                res["first_difference"] = (
                    first_difference(original, rebuilt) if original.exists() else "original missing"
                )
            entry["reproducible"] = same
            if not same:
                entry["first_difference"] = res["first_difference"]
            results.append(res)
    landed = [
        Outcome.from_json({**e, "events": []})
        for e in manifest["entries"]
        if e["status"] in ("reused", "fetched", "built", "cached")
    ]
    manifest["closure"] = closure_check(settings, landed, confirm_with_pip=True)
    manifest["smoke"] = [smoke_import(settings, settings.paths.output / e.wheel) for e in landed]
    manifest["verify"] = {
        "rebuilt": len(results),
        "reproducible": sum(1 for r in results if r["reproducible"]),
        "results": results,
    }
    write_json(settings.paths.manifest, manifest)
    return manifest
