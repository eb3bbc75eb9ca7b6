"""The batched jobs: reuse input wheels as they are, fetch target wheels from the index."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .errors import IndexAccessError, InvalidWheelError, UnsafeNameError
from .files import place_wheel
from .history import new_event
from .models import DistFile, Outcome, PlanNode, Status
from .settings import Settings
from .wheels import scan_wheel

log = logging.getLogger(__name__)


def reuse_wheels(
    nodes: list[PlanNode], inventory: dict[str, dict], settings: Settings
) -> list[Outcome]:
    """Copy every reusable input wheel into the output folder (one job for all of them)."""
    outcomes = []
    for node in nodes:
        rec = inventory[node.input_files[0]]
        src = Path(rec["path"])
        dest = place_wheel(src, settings.paths.output, rec["sha256"])
        meta = {"tags": rec["tags"], "input_file": rec["file"], "needed_by": list(node.needed_by)}
        outcomes.append(_landed(node, Status.REUSED, dest, rec["sha256"], meta))
    return outcomes


def fetch_wheels(nodes: list[PlanNode], settings: Settings) -> list[Outcome]:
    """Download target wheels found on the index (cached, verified) into the output folder
    (build-only ones into the cache alone)."""
    index = settings.index()
    outcomes = []
    for node in nodes:
        src = node.source or {}
        dist = DistFile(**{k: src[k] for k in DistFile.__dataclass_fields__ if k in src})
        meta = {
            "url": dist.url,
            "tags": src.get("tags", []),
            "needed_by": list(node.needed_by),
            "fallback_from": node.fallback_from,
        }
        try:
            cached = (settings.paths.downloads / dist.filename).exists()
            path = index.download(dist, settings.paths.downloads)
            # checked as an input wheel is (entries, RECORD, caps) before it lands
            record = scan_wheel(path)
            if not record.valid:
                raise InvalidWheelError(f"the index's wheel is unsafe: {record.reason}")
            sha = record.sha256
            # a build-only wheel stays in the download cache, where its dependents' builds
            # find it (--find-links); only output packages go to the output folder
            dest = path if node.build_only else place_wheel(
                path, settings.paths.output, sha
            )
        except (IndexAccessError, UnsafeNameError, InvalidWheelError, OSError) as exc:
            detail = f"fetch of {dist.filename} failed: {exc}"
            log.error(detail)
            outcomes.append(
                Outcome(
                    node.name,
                    node.version,
                    Status.FAILED,
                    detail=detail,
                    metadata=meta,
                    events=[new_event(node.name, node.version, Status.FAILED, detail, **meta)],
                )
            )
            continue
        meta["download_cached"] = cached
        outcomes.append(_landed(node, Status.FETCHED, dest, sha, meta))
    return outcomes


def _landed(node: PlanNode, status: Status, dest: Path, sha256: str,
            meta: dict[str, Any]) -> Outcome:
    """The outcome of `node`'s wheel, in place at `dest`, and its event."""
    return Outcome(
        name=node.name,
        version=node.version,
        status=status,
        path=str(dest),
        detail=node.detail,
        sha256=sha256,
        wheel=dest.name,
        metadata=meta,
        events=[new_event(node.name, node.version, status, node.detail, **meta)],
    )
