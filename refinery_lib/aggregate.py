"""Aggregation: manifest, history events, a PEP 503 index of the output, the closure check."""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from . import proc
from .errors import CommandError, RefineryError, UnsafeNameError
from .failure_lines import REASON_SEP, last_lines
from .files import inside, place_wheel, read_json, write_json, write_tree
from .history import History
from .models import BAD_STATUSES, Action, Outcome, Plan, PlanNode, Status
from .provenance import provenance
from .run_id import current_run_id
from .safe_env import printable, redact_data
from .settings import Settings

log = logging.getLogger(__name__)

LANDED = frozenset({Status.REUSED, Status.FETCHED, Status.BUILT, Status.CACHED})


def load_outcomes(path: Path) -> list[Outcome]:
    if not path.exists():
        return []
    data = read_json(path)
    items = data if isinstance(data, list) else [data]
    return [Outcome.from_json(d) for d in items]


@dataclass
class RunOutcomes:
    """What the workflow has produced so far, one outcome per plan node, split by what the
    manifest holds: output packages (the input and its runtime dependencies) and invalid input
    files in `entries`; nodes needed only to build others in `build_only` (history and log
    only: not in the output folder, the manifest, OUTPUT/simple or the closure check)."""

    plan: Plan
    entries: list[Outcome]
    build_only: list[Outcome]
    #: the plan's own events (missing, skipped, invalid)
    events: list[dict[str, Any]]


def read_outcomes(settings: Settings) -> RunOutcomes:
    """Every outcome the workflow has produced so far, one per plan node, plus plan events.

    It reads the records the aggregate rule declares as its input (the plan, the reuse and
    fetch records, each build's outcome), each build's benchmark and the failure record
    (`Paths.failure`) of any node. A job that fails leaves only that record (Snakemake removes
    a failed job's outputs), so after failed jobs, when the onerror handler runs this
    aggregation instead of the rule, it is what says why. The node's job removes it when it
    runs again: when the rule runs every job succeeded, and the only failure records left are
    an earlier run's, of nodes without a job in this plan."""
    paths = settings.paths
    plan = Plan.from_file(paths.plan)
    nodes = list(plan.nodes())
    found: dict[str, Outcome] = {}
    for o in load_outcomes(paths.reuse_record) + load_outcomes(paths.fetch_record):
        found[_okey(o.name, o.version)] = o
    by_key: dict[str, Outcome] = {}
    for n in plan.nodes(Action.BUILD):
        # by key: with fallback-latest the outcome's version may differ from the plan's
        for o in load_outcomes(paths.outcome(n.key)):
            _add_benchmark(o, paths.benchmark(n.key))
            by_key[n.key] = o
    # an outcome of the same node wins over its failure record
    for n in nodes:
        for o in load_outcomes(paths.failure(n.key)):
            found.setdefault(_okey(o.name, o.version), o)
    outcomes: list[Outcome] = []
    build_only: list[Outcome] = []
    for n in nodes:
        o = by_key.get(n.key) or found.get(_okey(n.name, n.version)) or _from_plan(n, found, nodes)
        o.metadata.setdefault("needed_by", list(n.needed_by))
        o.metadata.setdefault("plan", n.detail)
        if n.build_only:
            o.metadata["build_only"] = True
            build_only.append(o)
        else:
            outcomes.append(o)
    for inv in plan.invalid:
        outcomes.append(
            Outcome(
                name=inv.file,
                version="",
                status=Status.INVALID,
                path=inv.path,
                detail=inv.reason,
                metadata={"file": inv.file},
            )
        )
    return RunOutcomes(plan, outcomes, build_only, list(plan.events))


def _add_benchmark(outcome: Outcome, tsv: Path) -> None:
    """Peak memory of the build job (Snakemake's benchmark), for resources and the panel."""
    try:
        header, values = tsv.read_text().splitlines()[:2]
        row = dict(zip(header.split("\t"), values.split("\t"), strict=False))
        rss = round(float(row["max_rss"]), 1)
    except (OSError, ValueError, KeyError):
        return
    outcome.metadata["max_rss_mb"] = rss
    for event in outcome.events:
        if event.get("status") in (Status.BUILT, Status.CACHED):
            event.setdefault("metadata", {})["max_rss_mb"] = rss


def _okey(name: str, version: str) -> str:
    return f"{canonicalize_name(name)}=={version}"


def _from_plan(n: PlanNode, found: dict[str, Outcome], nodes: list[PlanNode]) -> Outcome:
    if n.action is Action.MISSING:
        return Outcome(
            n.name,
            n.version,
            Status.MISSING,
            detail=n.detail,
            metadata={"requirement": n.requirement},
        )
    if n.action is Action.SKIP:
        return Outcome(n.name, n.version, Status.SKIPPED, detail=n.detail)
    by_key = {m.key: m for m in nodes}
    failed_deps = [
        k
        for k in n.build_deps
        if (d := by_key.get(k)) is not None
        and (o := found.get(_okey(d.name, d.version))) is not None
        and o.status is Status.FAILED
    ]
    if failed_deps:
        detail = f"not built: its dependency {', '.join(failed_deps)} failed"
        # a build-only dependency has no manifest entry of its own to say why
        why = [
            f"{d.key}: {o.detail[:300]}"
            for k in failed_deps
            if (d := by_key[k]).build_only and (o := found[_okey(d.name, d.version)]).detail
        ]
        if why:
            detail += f" (needed only to build it: {'; '.join(why)})"
    else:
        detail = (
            "not built: the job did not run to completion (interrupted, or an upstream step failed)"
        )
        # failed in the manifest (it did not land), but no failed build in the history:
        # --skip-known-failures, build statistics and the panel's failures must not count it
        return Outcome(
            n.name, n.version, Status.FAILED, detail=detail, metadata={"incomplete": True}
        )
    return Outcome(n.name, n.version, Status.FAILED, detail=detail)


def write_simple_index(folder: Path, entries: list[Outcome]) -> None:
    """A PEP 503 index of the output wheels in `folder`, OUTPUT/simple (links relative to it,
    sha256 fragments)."""
    by_project: dict[str, list[Outcome]] = {}
    for e in entries:
        if e.status in LANDED and e.wheel:
            by_project.setdefault(canonicalize_name(e.name), []).append(e)
    files: dict[str, str] = {}
    links = []
    for project in sorted(by_project):
        anchors = "\n".join(
            f'<a href="../../{html.escape(e.wheel)}#sha256={e.sha256}">'
            f"{html.escape(e.wheel)}</a><br>"
            for e in sorted(by_project[project], key=lambda e: e.wheel)
        )
        files[f"{project}/index.html"] = (
            f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
            f"<title>Links for {project}</title></head>\n<body><h1>Links for {project}</h1>\n"
            f"{anchors}\n</body></html>\n"
        )
        links.append(f'<a href="{project}/">{project}</a><br>')
    files["index.html"] = (
        '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'
        "<title>Simple index</title></head>\n<body>\n" + "\n".join(links) + "\n</body></html>\n"
    )
    write_tree(folder, files)


#: `refinery verify` asks pip's resolver to confirm the closure up to this many packages: it
#: was measured here at 21 GB and 20+ minutes for 5,000 requirements on a native target
PIP_CLOSURE_LIMIT = 300


def metadata_closure(settings: Settings, entries: list[Outcome]) -> list[str]:
    """Problems of the landed set, checked with packaging: every wheel's tags accepted by the
    target, every Requires-Dist active for the target (extras followed) met by a landed wheel."""
    from packaging.requirements import InvalidRequirement, Requirement

    from .wheels import read_wheel_metadata

    env = settings.target.marker_environment()
    landed: dict[str, tuple[str, list[str]]] = {}
    problems: list[str] = []
    for e in entries:
        if e.status not in LANDED or not e.wheel:
            continue
        wheel = settings.paths.output / e.wheel
        if not settings.target.accepts(wheel_tags(e.wheel)):
            problems.append(f"{e.wheel}: tags not accepted by the target")
        try:
            requires = read_wheel_metadata(wheel).get("requires-dist", [])
        except (OSError, RefineryError) as exc:
            problems.append(f"{e.wheel}: {exc}")
            requires = []
        landed[canonicalize_name(e.name)] = (e.version, requires)

    def check(name: str, extras: frozenset[str], seen: set) -> None:
        if (name, extras) in seen:
            return
        seen.add((name, extras))
        version, requires = landed[name]
        for line in requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(
                req.marker.evaluate(dict(env, extra=x)) for x in (extras or {""})
            ):
                continue
            dep = canonicalize_name(req.name)
            if dep not in landed:
                problems.append(f"{name} {version} requires {req}: not in the output")
            elif not req.specifier.contains(landed[dep][0], prereleases=True):
                problems.append(f"{name} {version} requires {req}: output has {landed[dep][0]}")
            else:
                check(dep, frozenset(req.extras), seen)

    seen: set = set()
    for name in sorted(landed):
        check(name, frozenset(), seen)
    return list(dict.fromkeys(problems))


def closure_check(
    settings: Settings, entries: list[Outcome], confirm_with_pip: bool = False
) -> dict[str, Any]:
    """Every landed package installs for the target, offline, from the output alone.

    packaging checks names, versions, markers and tags for any size (every run); with
    `confirm_with_pip` (`refinery verify`) pip's own resolver confirms it up to
    PIP_CLOSURE_LIMIT packages (0.3 s of a run's fixed cost when it was part of every run).
    """
    reqs = sorted(
        {f"{canonicalize_name(e.name)}=={e.version}" for e in entries if e.status in LANDED}
    )
    if not reqs:
        return {"ok": True, "checked": 0, "detail": "nothing to check", "method": "none"}
    problems = metadata_closure(settings, entries)
    if problems:
        return {
            "ok": False,
            "checked": len(reqs),
            "method": "packaging",
            "detail": "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""),
        }
    if not confirm_with_pip or len(reqs) > PIP_CLOSURE_LIMIT:
        skipped = (
            f"pip's resolver skipped above {PIP_CLOSURE_LIMIT} packages"
            if confirm_with_pip
            else "`refinery verify` confirms it with pip"
        )
        return {
            "ok": True,
            "checked": len(reqs),
            "method": "packaging",
            "detail": f"all {len(reqs)} packages' requirements met in the output for the "
            f"target ({skipped})",
        }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    with tempfile.TemporaryDirectory(prefix="refinery-closure-") as tmp:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--target",
            str(Path(tmp) / "t"),
            "--no-index",
            "--find-links",
            str(settings.paths.output),
            "--only-binary",
            ":all:",
            "--quiet",
            *settings.target.pip_target_args(),
            *reqs,
        ]
        try:
            proc.run(argv, env=env)
        except CommandError as exc:
            detail = last_lines(exc.output, 4, 1000) or str(exc)
            return {"ok": False, "checked": len(reqs), "detail": detail, "method": "pip"}
    return {
        "ok": True,
        "checked": len(reqs),
        "method": "pip",
        "detail": f"pip resolves all {len(reqs)} packages offline for the target",
    }


def aggregate(settings: Settings, run_id: str | None = None) -> dict[str, Any]:
    """Write manifest, index and history for whatever the workflow has produced so far."""
    started = time.time()
    run_id = run_id or current_run_id()
    collected = read_outcomes(settings)
    entries = collected.entries
    target = settings.target
    settle_output(settings, collected)
    write_simple_index(settings.paths.simple_index, entries)
    closure = closure_check(settings, entries) if settings.closure_check else {"ok": None}
    counts = Counter(str(e.status) for e in entries)
    manifest: dict[str, Any] = {
        "schema": 1,
        "run_id": run_id,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "target": {
            "python": target.python,
            "python_tag": target.python_tag,
            "platform_tag": target.platform_tag,
            "platforms": list(target.platforms[:8]),
        },
        "summary": dict(sorted(counts.items())),
        "ok": not any(e.status in BAD_STATUSES for e in entries) and closure.get("ok") is not False,
        "closure": closure,
        "entries": [e.to_json() | {"events": None} for e in entries],
    }
    prov: dict[str, str] = {}
    for entry, outcome in zip(manifest["entries"], entries, strict=True):
        entry.pop("events")
        if outcome.status in LANDED and outcome.wheel:
            planned = outcome.metadata.get("fallback_from") or outcome.version
            node = collected.plan.find(outcome.name, planned)
            # a sdist URL may carry the index's credentials
            record = redact_data(provenance(outcome, node, manifest["target"]))
            if outcome.status in (Status.BUILT, Status.CACHED):
                # a file beside the manifest only where there is a story to tell (sdist, build);
                # a reused or fetched wheel's origin stays in the manifest: one file less per
                # wheel, the cost that made aggregation grow faster than linearly (bench/)
                prov[f"{outcome.wheel}.json"] = (
                    json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
                )
            entry["provenance"] = record
    write_tree(settings.paths.provenance, prov)
    manifest["entries"] = redact_data(manifest["entries"])  # reasons quote build output
    write_json(settings.paths.manifest, manifest)
    history = History(settings.paths.history_db)
    history.start_run(run_id, target.python_tag, target.platform_tag)
    events = list(collected.events)
    for e in entries + collected.build_only:
        events.extend(e.events)
        if e.status in (Status.FAILED,) and not e.events:
            # derived failures (never ran) are recorded once per run; a build that was
            # interrupted (or never started) is `incomplete`, not a failure of that package
            status = "incomplete" if e.metadata.get("incomplete") else "failed"
            events.append(
                {
                    "uid": f"{run_id}:{e.name}:{e.version}:{status}",
                    "package": e.name,
                    "version": e.version,
                    "status": status,
                    "detail": e.detail,
                    "metadata": e.metadata,
                }
            )
    new = history.record(events, run_id, target.python_tag, target.platform_tag)
    history.finish_run(run_id, dict(counts))
    manifest["history_events_recorded"] = new
    return manifest


def settle_output(settings: Settings, collected: RunOutcomes) -> None:
    """The output folder as the plan says: build-only wheels out of it (the build step places
    every wheel it built, or found built, there; they stay in the cache for the builds that
    need them), an output package's wheel back in it from the cache where an earlier plan
    had it build-only (its outcome is not made again). One log line for each build-only
    package that did not land: its dependents' entries name it."""
    output = settings.paths.output
    landed = {e.wheel for e in collected.entries if e.status in LANDED and e.wheel}
    _withdraw_unlisted(settings.paths.manifest, output, landed)
    for e in collected.entries:
        if e.status in (Status.BUILT, Status.CACHED, Status.FETCHED) and e.wheel:
            _restore(e, output, (settings.paths.wheels, settings.paths.downloads))
        elif e.status is Status.REUSED and e.wheel:
            # a reused wheel's intact copy is the input file it came from
            _restore(e, output, (settings.paths.input,))
    kept = []
    for o in collected.build_only:
        if o.status not in LANDED:
            log.warning(
                "%s %s, needed only to build %s, %s (not an output package): %s",
                o.name,
                o.version,
                ", ".join(o.metadata.get("needed_by", [])) or "nothing",
                o.status,
                o.detail,
            )
            continue
        kept.append(f"{o.name} {o.version} ({o.status})")
        if not o.wheel or o.wheel in landed:
            continue
        try:
            path = inside(output, o.wheel)
        except UnsafeNameError as exc:
            log.warning("not removing %s from the output: %s", o.wheel, exc)
            continue
        if path.is_file():
            path.unlink()
    if kept:
        log.info(
            "%d package(s) needed only to build others, kept in the cache and out of the "
            "output: %s",
            len(kept),
            ", ".join(kept),
        )


def _withdraw_unlisted(manifest_path: Path, output: Path, landed: set[str]) -> None:
    """Wheels the last run's manifest placed in `output` that this run's does not land (its
    build now failed, a newer version replaced it) leave the output, so that the folder says
    what the manifest says. Only a file the refinery wrote and nobody changed since (its
    sha256 is the one that manifest recorded) is removed; caches and the input keep theirs."""
    from .wheels import sha256_file

    try:
        before = read_json(manifest_path).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return
    for e in before:
        wheel, digest = e.get("wheel"), e.get("sha256")
        if not (isinstance(wheel, str) and isinstance(digest, str) and digest) or wheel in landed:
            continue
        if e.get("status") not in {str(s) for s in LANDED}:
            continue
        try:
            path = inside(output, wheel)
            if path.is_file() and not path.is_symlink() and sha256_file(path) == digest:
                path.unlink()
                log.warning("%s left the output: this run's manifest does not land %s %s",
                            wheel, e.get("name", "?"), e.get("version", "?"))
        except (UnsafeNameError, OSError) as exc:
            log.warning("not removing %s from the output: %s", wheel, exc)


def _restore(entry: Outcome, output: Path, caches: tuple[Path, ...]) -> None:
    """`entry`'s wheel in `output` as the manifest says (by sha256): placed again from an
    intact cache copy when it is missing or changed there."""
    from .wheels import sha256_file

    try:
        dest = inside(output, entry.wheel)
        if dest.is_file() and (not entry.sha256 or sha256_file(dest) == entry.sha256):
            return
        why = "changed" if dest.exists() else "missing"
        for folder in caches:
            src = inside(folder, entry.wheel)
            if src.is_file() and (not entry.sha256 or sha256_file(src) == entry.sha256):
                dest.unlink(missing_ok=True)
                place_wheel(src, output, entry.sha256 or None)
                log.warning("%s was %s in the output: placed again from %s", entry.wheel, why,
                            folder)
                return
        log.error("%s is %s in the output and no intact copy is cached: run again with "
                  "--rebuild %s", entry.wheel, why, entry.name)
    except (UnsafeNameError, OSError) as exc:
        log.warning("cannot place %s in the output: %s", entry.wheel, exc)


def output_mismatch(manifest_path: Path, output: Path) -> str | None:
    """What of the output no longer matches the manifest of the last run (by sha256), said
    in one line, or None: such a run is not done, whatever Snakemake's records say."""
    from .wheels import sha256_file

    try:
        entries = read_json(manifest_path).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return None
    bad = []
    for e in entries:
        if e.get("status") not in {str(s) for s in LANDED} or not e.get("wheel"):
            continue
        try:
            path = inside(output, e["wheel"])
            if not path.is_file():
                bad.append(f"{e['wheel']} missing")
            elif e.get("sha256") and sha256_file(path) != e["sha256"]:
                bad.append(f"{e['wheel']} changed")
        except (UnsafeNameError, OSError):
            bad.append(f"{e['wheel']} unreadable")
    if not bad:
        return None
    return (f"the output does not match its manifest ({'; '.join(bad[:3])}"
            + (f" and {len(bad) - 3} more" if len(bad) > 3 else "") + "): placing it again")


#: the summary table's width when it cannot ask the terminal (COLUMNS is asked first)
SUMMARY_WIDTH = 100
#: the detail column is never narrower than this (a wrapped reason needs room to be read)
SUMMARY_MIN_DETAIL = 40
#: the widest the name and version columns get; a longer one stands on a line of its own
SUMMARY_MAX_NAME = 30
SUMMARY_MAX_VERSION = 20
#: the indent of a detail that goes under its row (a narrow terminal)
SUMMARY_DETAIL_INDENT = 4


def summary_table(manifest: dict[str, Any], width: int | None = None) -> str:
    """Plain-text table: counts per status, then every entry that needs attention.

    Nothing is cut: a reason longer than the line wraps onto indented lines under its
    column (a log path is never broken, so it can be copied), and a name longer than its
    column gets a line of its own. `width` defaults to the terminal's (SUMMARY_WIDTH when
    there is none)."""
    width = width or shutil.get_terminal_size((SUMMARY_WIDTH, 24)).columns
    lines = ["status      count"]
    for status, n in sorted(manifest["summary"].items()):
        lines.append(f"{status:<11} {n:>5}")
    bad = [e for e in manifest["entries"] if e["status"] in {str(s) for s in BAD_STATUSES}]
    if bad:
        rows = [[printable(str(e[k] or "")) for k in ("name", "version", "status", "detail")]
                for e in bad]
        widths = [
            min(max(len(header), *(len(r[i]) for r in rows)), limit)
            for i, (header, limit) in enumerate(
                (("package", SUMMARY_MAX_NAME), ("version", SUMMARY_MAX_VERSION), ("status", 8))
            )
        ]
        lines.append("")
        lines.append(_row(("package", "version", "status"), widths) + "detail")
        for name, version, status, detail in rows:
            lines.extend(_wrapped_row((name, version, status), widths, detail, width))
    closure = manifest.get("closure", {})
    if closure.get("ok") is not None:
        lines.append("")
        lines.append(
            f"closure check: {'ok' if closure['ok'] else 'FAILED'}: {closure.get('detail', '')}"
        )
    lines.append(f"manifest: {manifest.get('path', '')}")
    return "\n".join(lines)


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    return "".join(f"{cell:<{w}} " for cell, w in zip(cells, widths, strict=True))


def _wrapped_row(cells: tuple[str, ...], widths: list[int], detail: str, width: int) -> list[str]:
    """One table row whose detail wraps under its column. Cells wider than their column (a
    long name) stand on a line of their own above it; where the column leaves the detail
    less than SUMMARY_MIN_DETAIL characters, the detail goes under the row, indented."""
    indent = sum(widths) + len(widths)
    head = _row(cells, widths)
    out = []
    if width - indent < SUMMARY_MIN_DETAIL:
        indent = SUMMARY_DETAIL_INDENT
    if len(head) > indent:
        out.append(head.rstrip())
        head = " " * indent
    room = max(SUMMARY_MIN_DETAIL, width - indent)
    parts = [
        line
        for part in detail.split(REASON_SEP)  # error line, hint, log: a line each
        # "log: PATH" stays on one line, however long: the path is to be copied
        for line in (
            [part.strip()]
            if len(part.split()) <= 2
            else textwrap.wrap(part, room, break_long_words=False, break_on_hyphens=False)
        )
    ] or [""]
    out.append((head + parts[0]).rstrip())
    out.extend(" " * indent + part for part in parts[1:])
    return out


def wheel_tags(filename: str) -> list[str]:
    return sorted(str(t) for t in parse_wheel_filename(filename)[3])
