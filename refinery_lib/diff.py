"""`refinery diff OLD NEW`: what changed between two runs (manifests or output folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import RefineryError
from .files import read_json

LANDED = {"reused", "fetched", "built", "cached"}


def load_manifest(path: Path) -> dict[str, Any]:
    path = path / "manifest.json" if path.is_dir() else path
    if not path.exists():
        raise RefineryError(f"no manifest at {path}")
    return read_json(path)


def _index(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in manifest.get("entries", [])}


def diff_manifests(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    a, b = _index(old), _index(new)
    out: dict[str, Any] = {
        "added": [],
        "removed": [],
        "version_changed": [],
        "tag_changed": [],
        "hash_changed": [],
        "new_failures": [],
        "fixed_failures": [],
        "status_changed": [],
    }
    for name in sorted(b.keys() - a.keys()):
        out["added"].append(
            {"name": name, "version": b[name]["version"], "status": b[name]["status"]}
        )
    for name in sorted(a.keys() - b.keys()):
        out["removed"].append(
            {"name": name, "version": a[name]["version"], "status": a[name]["status"]}
        )
    for name in sorted(a.keys() & b.keys()):
        x, y = a[name], b[name]
        x_ok, y_ok = x["status"] in LANDED, y["status"] in LANDED
        if x_ok and not y_ok:
            out["new_failures"].append(
                {
                    "name": name,
                    "version": y["version"],
                    "status": y["status"],
                    "detail": y.get("detail", ""),
                }
            )
        elif y_ok and not x_ok:
            out["fixed_failures"].append(
                {"name": name, "version": y["version"], "was": x["status"], "now": y["status"]}
            )
        elif x["status"] != y["status"]:
            out["status_changed"].append({"name": name, "was": x["status"], "now": y["status"]})
        if x["version"] != y["version"]:
            out["version_changed"].append({"name": name, "old": x["version"], "new": y["version"]})
        elif x_ok and y_ok:
            if x.get("wheel") != y.get("wheel"):
                out["tag_changed"].append(
                    {"name": name, "old": x.get("wheel"), "new": y.get("wheel")}
                )
            elif x.get("sha256") != y.get("sha256"):
                # same version, same file name, other bytes: a non-reproducible rebuild
                out["hash_changed"].append(
                    {
                        "name": name,
                        "version": y["version"],
                        "wheel": y.get("wheel"),
                        "old": x.get("sha256"),
                        "new": y.get("sha256"),
                    }
                )
    out["identical"] = not any(out[k] for k in out)
    return out


#: how `render` shows each kind of difference, in its order
_SHOWN = (
    ("added", "+ {name} {version} ({status})"),
    ("removed", "- {name} {version} ({status})"),
    ("version_changed", "~ {name}: version {old} -> {new}"),
    ("tag_changed", "~ {name}: wheel {old} -> {new}"),
    ("hash_changed", "! {name} {version}: same wheel name, different sha256 "
                     "({old:.12} -> {new:.12}): not reproducible"),
    ("new_failures", "x {name} {version}: now {status}: {detail:.120}"),
    ("fixed_failures", "v {name} {version}: fixed ({was} -> {now})"),
    ("status_changed", "~ {name}: {was} -> {now}"),
)


def render(diff: dict[str, Any]) -> str:
    """The differences as text, one line each."""
    if diff["identical"]:
        return "no differences"
    return "\n".join(line.format(**e) for key, line in _SHOWN for e in diff[key])
