"""One function per workflow step: each `scripts/` adapter calls exactly one of these, with
the settings and the paths Snakemake gives the job."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from . import missing_deps
from .aggregate import aggregate
from .build import build_package, sdist_for, verified_sdist
from .build_requirements import first_isolated_pins
from .errors import BuildError, RefineryError
from .files import read_json, write_json
from .history import History, new_event
from .models import Action, InvalidInput, Outcome, Plan, PlanNode, Status, WheelRecord
from .plan import Planner
from .ready_wheels import fetch_wheels, reuse_wheels
from .safe_env import printable
from .settings import Settings
from .warmup import Planned, WarmProblem, WarmRecord, warm_build_env
from .wheels import scan_folder, sha256_file

log = logging.getLogger(__name__)


def scan_input(settings: Settings, inventory_path: Path) -> list[WheelRecord]:
    """Every file of the input folder, scanned (listed here, never by Snakemake)."""
    records = scan_folder(settings.paths.input)
    write_json(inventory_path, {"input": str(settings.paths.input),
                                "wheels": [r.to_json() for r in records]})
    return records


def plan_workflow(settings: Settings, inventory_path: Path, plan_path: Path) -> Plan:
    inventory = read_json(inventory_path)
    records = [WheelRecord.from_json(w) for w in inventory["wheels"]]
    needed = missing_deps.load(settings.paths.missing_deps)
    if needed:
        extra = {k: tuple(v) for k, v in needed.items()}
        settings = replace(settings, plan=replace(settings.plan, extra_requires=extra))
    last_status = None
    if settings.plan.skip_known_failures and settings.paths.history_db.exists():
        history = History(settings.paths.history_db)
        last_status = history.last_status
    index = settings.index()
    planner = Planner(settings.target, settings.plan, index, settings.paths.downloads, last_status)
    nodes = planner.plan(records)
    invalid = [InvalidInput(r.file, r.path, r.reason) for r in records if not r.valid]
    events = [
        new_event(r.file, "", Status.INVALID, r.reason, file=r.file) for r in records if not r.valid
    ]
    for n in nodes:
        if n.action in (Action.MISSING, Action.SKIP):
            status = Status.MISSING if n.action is Action.MISSING else Status.SKIPPED
            events.append(
                new_event(
                    n.name,
                    n.version,
                    status,
                    n.detail,
                    requirement=n.requirement,
                    needed_by=list(n.needed_by),
                )
            )
    counts: dict[str, int] = {}
    for n in nodes:
        counts[str(n.action)] = counts.get(str(n.action), 0) + 1
    log.info("plan: %s; %d invalid input file(s)", counts, len(invalid))
    for item in invalid:
        log.warning("invalid input %s: %s", printable(item.file), printable(item.reason))
    plan = Plan(
        python=settings.target.python,
        platform_tag=settings.target.platform_tag,
        all_nodes=tuple(nodes),
        invalid=tuple(invalid),
        events=tuple(events),
        index_unreachable=tuple(sorted(set(index.unreachable))),
    )
    write_json(plan_path, plan.to_json())
    return plan


def forget_unreachable_plan(plan_path: Path) -> str | None:
    """Remove a plan made while the index did not answer, so that this run plans again
    (Snakemake reruns the plan when its output is missing; the plan depends only on the
    input otherwise). Returns what to tell the user, or None for a sound plan."""
    try:
        unreachable = Plan.from_file(plan_path).index_unreachable
    except (OSError, ValueError):
        return None
    if not unreachable:
        return None
    plan_path.unlink(missing_ok=True)
    return (f"the last plan could not reach the index ({unreachable[0]}"
            + (f" and {len(unreachable) - 1} more" if len(unreachable) > 1 else "")
            + "); planning again")


def run_reuse(settings: Settings, inventory_path: Path, plan_path: Path, record: Path) -> None:
    inventory = {w["file"]: w for w in read_json(inventory_path)["wheels"]}
    nodes = list(Plan.from_file(plan_path).nodes(Action.REUSE))
    outcomes = reuse_wheels(nodes, inventory, settings)
    write_json(record, [o.to_json() for o in outcomes])
    log.info("reused %d wheel(s)", len(outcomes))


def run_fetch(settings: Settings, plan_path: Path, record: Path) -> None:
    nodes = list(Plan.from_file(plan_path).nodes(Action.FETCH))
    outcomes = fetch_wheels(nodes, settings)
    failed = []
    for node, o in zip(nodes, outcomes, strict=True):
        failure = settings.paths.failure(node.key)
        if o.status is Status.FAILED:
            write_json(failure, o.to_json())
            failed.append(o)
        else:
            failure.unlink(missing_ok=True)
    if failed:
        # the batch fails so the next run retries it; fetched files stay cached
        raise RefineryError(
            f"{len(failed)} fetch(es) failed: " + "; ".join(o.detail for o in failed)
        )
    write_json(record, [o.to_json() for o in outcomes])
    log.info("fetched %d wheel(s)", len(outcomes))


def _record_failure(
    path: Path,
    node: PlanNode,
    detail: str,
    events: list | None = None,
    metadata: dict | None = None,
) -> None:
    """The record aggregation turns into the package's failed manifest entry and events."""
    events = events or [new_event(node.name, node.version, Status.FAILED, detail)]
    fail = Outcome(node.name, node.version, Status.FAILED, detail=detail,
                   metadata=metadata or {}, events=events)
    write_json(path, fail.to_json())


def run_fetch_sdist(settings: Settings, key: str, record: Path) -> None:
    node = Plan.from_file(settings.paths.plan).node(key)
    failure = settings.paths.failure(key)
    failure.unlink(missing_ok=True)
    try:
        path = sdist_for(node, settings)
    except BuildError as exc:
        # the manifest names why the package was not built; the job fails so a rerun retries
        _record_failure(failure, node, str(exc))
        raise
    write_json(
        record,
        {
            "name": node.name,
            "version": node.version,
            "path": str(path),
            "sha256": sha256_file(path),
            "url": (node.source or {}).get("url", ""),
        },
    )


def run_prepare_build_env(
    settings: Settings, plan_path: Path, record: Path, log_path: Path
) -> None:
    """The warm-up of build environments (warmup.py): every planned sdist downloaded
    (fetch_sdist then finds it cached) and read for its build requirements, which are
    downloaded once; the local builder's shared environments made. An sdist that
    cannot be had is named and left out: its own fetch_sdist job fails, the other builds go on.
    """
    planned: list[Planned] = []
    unfetched: list[WarmProblem] = []
    for node in Plan.from_file(plan_path).nodes(Action.BUILD):
        try:
            sdist = sdist_for(node, settings)
        except BuildError as exc:
            unfetched.append(WarmProblem(node.key, "", str(exc)))
            continue
        planned.append(
            Planned(
                key=node.key,
                name=node.name,
                sdist=sdist,
                sha256=sha256_file(sdist),
                pins=first_isolated_pins(settings, node.name),
            )
        )
    warm = warm_build_env(settings, planned, log_path, unfetched)
    warm.write(record)
    log.info("%s", warm.summary())


def run_build(
    settings: Settings,
    key: str,
    sdist_record: Path,
    outcome_path: Path,
    buildenv_record: Path | None = None,
) -> None:
    node = Plan.from_file(settings.paths.plan).node(key)
    failure = settings.paths.failure(key)
    failure.unlink(missing_ok=True)
    fetched = read_json(sdist_record)
    try:
        sdist = verified_sdist(node, settings, Path(fetched["path"]), fetched["sha256"])
    except BuildError as exc:
        _record_failure(failure, node, str(exc))
        log.error("%s", exc)
        raise
    warm = (WarmRecord.read(buildenv_record)
            if buildenv_record and buildenv_record.exists() else None)
    try:
        outcome = build_package(node, sdist, settings, warm)
    except BuildError as exc:
        _record_failure(failure, node, str(exc), exc.events,
                        {**exc.metadata, "log_path": str(exc.log_path or "")})
        missing = exc.metadata.get("missing_python_deps") or []
        if missing and missing_deps.add(settings.paths.missing_deps, node.name, missing):
            log.warning(
                "%s needs %s: planned on the next evaluation of the plan",
                node.name,
                ", ".join(missing),
            )
        log.error("%s", exc)
        raise
    except Exception as exc:
        # a crash of the refinery itself still leaves a record naming it
        _record_failure(
            failure, node, f"internal error while building {node.name} {node.version}: {exc!r}"
        )
        raise
    write_json(outcome_path, outcome.to_json())
    log.info("%s: %s", outcome.status, outcome.detail)


def run_aggregate(settings: Settings, complete: Path) -> None:
    """The aggregation (manifest, history, output index, closure check), then its mark: the
    run's id and summary."""
    manifest = aggregate(settings)
    write_json(complete, {"run_id": manifest["run_id"], "summary": manifest["summary"]})
