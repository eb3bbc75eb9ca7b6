"""Provenance: where each output wheel came from and how it was made."""

from __future__ import annotations

from typing import Any

from .models import Outcome, PlanNode, Status

_BUILD_KEYS = (
    "variant",
    "attempt",
    "attempts",
    "builder",
    "build_deps",
    "source_date_epoch",
    "recipes",
    "hints",
    "duration",
    "max_rss_mb",
    "fallback_from",
    "tags",
    "auditwheel",
    "auditwheel_tag",
    "grafted_libs",
    "image",
    # the cross builder's toolchain and target (cross/attempt.py: CrossTools.provenance)
    "zig",
    "zig_target",
    "target_glibc",
    "target_python_image",
    "target_python_image_id",
    "target_libraries",
)


def provenance(outcome: Outcome, node: PlanNode | None, target: dict[str, str]) -> dict[str, Any]:
    meta = outcome.metadata
    record: dict[str, Any] = {
        "wheel": outcome.wheel,
        "sha256": outcome.sha256,
        "name": outcome.name,
        "version": outcome.version,
        "status": str(outcome.status),
        "target": target,
    }
    source = (node.source or {}) if node else {}
    if outcome.status in (Status.BUILT, Status.CACHED):
        record["sdist"] = {
            "filename": meta.get("sdist") or source.get("filename", ""),
            "url": source.get("url", ""),
            "sha256": meta.get("sdist_sha256") or source.get("sha256", ""),
        }
        record["build"] = {k: meta[k] for k in _BUILD_KEYS if k in meta}
    elif outcome.status is Status.FETCHED:
        record["origin"] = {
            "url": meta.get("url") or source.get("url", ""),
            "sha256": outcome.sha256,
        }
    elif outcome.status is Status.REUSED:
        record["origin"] = {"input_file": meta.get("input_file", ""), "sha256": outcome.sha256}
    return record
