"""What the dashboard and the package page show, gathered from history, logs, queue, catalog."""

from __future__ import annotations

import functools
import json
from collections import Counter
from typing import Any

from refinery_lib.hints import ERROR_LINE_MAX
from refinery_lib.history import History
from refinery_lib.queue import RetryQueue
from refinery_lib.scheduling import db_state

from . import catalog, charts, logs, stats
from .settings import PanelSettings


def events_with_status(
    history: History, status: str, limit: int = 10, package: str | None = None
) -> list[dict[str, Any]]:
    sql = "SELECT * FROM events WHERE status=?"
    args: list[Any] = [status]
    if package:
        sql += " AND package=?"
        args.append(package)
    sql += " ORDER BY ts DESC, id DESC LIMIT ?"
    args.append(limit)
    with history.connect() as con:
        rows = [dict(r) for r in con.execute(sql, args)]
    for r in rows:
        try:
            r["metadata"] = json.loads(r["metadata"] or "{}")
        except json.JSONDecodeError:
            r["metadata"] = {}
    return rows


def dashboard(history: History, queue: RetryQueue) -> dict[str, Any]:
    requests = queue.requests()
    by_package = tuple(sorted(Counter(r.name for r in requests).items()))
    state = db_state(history.path.resolve())
    if state is None:
        return _dashboard(history, len(requests), by_package)
    return _cached_dashboard(str(history.path.resolve()), state, len(requests), by_package)


@functools.lru_cache(maxsize=4)
def _cached_dashboard(path: str, state: tuple, depth: int, by_package: tuple) -> dict[str, Any]:
    """The history changes when a run records its events: until then, the same page."""
    from pathlib import Path

    return _dashboard(History(Path(path)), depth, by_package)


#: the status cards' order: what is done, then what needs a look
CARD_ORDER = ("built", "cached", "reused", "fetched", "failed", "missing", "invalid", "skipped",
              "pending")


def status_cards(history: History) -> dict[str, Any]:
    """Packages per current status (the cards), and the event totals shown beside them."""
    by_status = stats.packages_by_status(history)
    rank = {s: i for i, s in enumerate(CARD_ORDER)}
    counts = dict(sorted(by_status.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
    events = history.status_counts()
    return {"counts": counts, "packages": sum(counts.values()),
            "attempts": events.get("attempt", 0), "events": sum(events.values())}


def _dashboard(history: History, depth: int, by_package: tuple) -> dict[str, Any]:
    df = stats.events_frame(history)
    return {
        **status_cards(history),
        "recent": history.recent(25),
        "failures": events_with_status(history, "failed", 10),
        "top_failures": history.top_failures(10),
        "top_slowest": history.top_slowest(10),
        "queue_depth": depth,
        "charts": charts.dashboard(df, depth, Counter(dict(by_package))),
    }


def _hints_for(event: dict[str, Any], settings: PanelSettings, entries: list[dict],
               log: logs.LogFile | None) -> list:
    """Hints the build recorded; else the catalog matched against the attempt's log now."""
    recorded = event["metadata"].get("hints")
    if isinstance(recorded, list) and recorded:
        return [h for h in recorded if isinstance(h, dict)]
    if log is None or not entries:
        return []
    text, _, _ = logs.tail_of(log, 64 * 1024)
    return catalog.match_log(text, settings.hints_path, entries)


def _first_error(event: dict[str, Any]) -> logs.FirstError | None:
    """What the compiler said first: from the attempt's log, else the line a recorded hint
    matched (the log may be gone). The event's own detail ("failed (exit 1)") says less."""
    log = event.get("log")
    found = logs.cached_first_error(log) if log is not None else None
    if found is not None:
        return found
    for h in event["metadata"].get("hints") or []:
        if isinstance(h, dict) and isinstance(h.get("line"), str) and h["line"].strip():
            line_no = h.get("line_no") if isinstance(h.get("line_no"), int) else 0
            return logs.FirstError(line_no, h["line"].strip()[:ERROR_LINE_MAX])
    return None


class _Logs:
    """find_logs once per version: a page asks for the log of many events."""

    def __init__(self, settings: PanelSettings):
        self.settings, self.seen = settings, {}

    def of(self, name: str, version: str) -> list[logs.LogFile]:
        if version not in self.seen:
            self.seen[version] = logs.find_logs(self.settings.logs_dir, name, version)
        return self.seen[version]


def _log_of(event: dict[str, Any], found: _Logs) -> logs.LogFile | None:
    meta = event["metadata"]
    attempt = meta.get("attempt") if isinstance(meta.get("attempt"), int) else None
    variant = meta.get("variant") if isinstance(meta.get("variant"), str) else None
    return logs.pick(found.of(event["package"], event["version"]), attempt, variant)


def suggested_recipe(hints: list[dict], manager: str) -> tuple[list[list[str]], list[str]]:
    """Recipe steps and system packages of all hints, in order, without repeats."""
    steps: list[list[str]] = []
    packages: list[str] = []
    for h in hints:
        for s in h.get("steps") or []:
            if isinstance(s, list) and s and s not in steps:
                steps.append([str(a) for a in s])
        for p in h.get(manager) or []:
            if str(p) not in packages:
                packages.append(str(p))
    return steps, packages


def alerts(summary: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    outcomes = [e["status"] for e in events if e["status"] not in ("attempt", "system_recipe")]
    if summary.get("last_status") == "failed":
        streak = next((i for i, s in enumerate(outcomes) if s != "failed"), len(outcomes))
        level = "danger" if streak >= 3 else "warning"
        out.append({"level": level, "text": f"the last build failed ({streak} failure(s) in a "
                                            "row); see the hints below"})
    if summary.get("last_status") == "missing":
        out.append({"level": "warning", "text": "missing: no usable file on the index"})
    built, failed = summary.get("built") or 0, summary.get("failed") or 0
    if built + failed >= 3 and failed / (built + failed) >= 0.5:
        out.append({"level": "warning",
                    "text": f"{failed} of {built + failed} builds failed"})
    if (summary.get("avg_duration") or 0) > 1800:
        out.append({"level": "info", "text": "slow package: builds average over 30 minutes"})
    return out


def package(
    name: str, history: History, queue: RetryQueue, settings: PanelSettings, entries: list
) -> dict[str, Any] | None:
    summary = history.package_summary(name)
    queued = [r for r in queue.requests() if r.name == name]
    if not summary["events"] and not queued:
        return None
    events = history.recent(200, name)
    failures = events_with_status(history, "failed", 5, name)
    found = _Logs(settings)
    for f in failures:
        f["log"] = _log_of(f, found)
        f["first_error"] = _first_error(f)
        f["hints"] = _hints_for(f, settings, entries, f["log"])
    attempts = [dict(e, log=_log_of(e, found)) for e in events if e["status"] == "attempt"]
    latest = events[0] if events else {}
    hints = failures[0]["hints"] if failures else []
    steps, packages = suggested_recipe(hints, settings.package_manager)
    versions = list(dict.fromkeys(e["version"] for e in events if e["version"]))
    return {
        "name": name,
        "summary": summary,
        "alerts": alerts(summary, events),
        "events": events[:50],
        "failures": failures,
        "attempts": attempts[:30],
        "variants": stats.variant_history(stats.events_frame(history, name)),
        "queued": queued,
        "versions": versions,
        "log_versions": [v for v in versions if found.of(name, v)],
        "retry": {
            "version": latest.get("version", ""),
            "python_tag": latest.get("python_tag", ""),
            "platform_tag": latest.get("platform_tag", ""),
            "recipe_steps": steps,
            "system_packages": packages,
        },
    }
