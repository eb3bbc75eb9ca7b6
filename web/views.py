"""What the dashboard and the package page show, gathered from history, logs, queue, catalog."""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from refinery_lib.failure_lines import ERROR_LINE_MAX
from refinery_lib.history import History
from refinery_lib.retry_queue import RetryQueue

from . import catalog, charts, logs, stats
from .settings import PanelSettings
from .store import cached


def dashboard(history: History, queue: RetryQueue) -> dict[str, Any]:
    """The dashboard: the history's part once per state of the history (web/store.py), the
    queue's part (its depth and chart) from the queue file as it is now."""
    requests = queue.requests()
    by_package = tuple(sorted(Counter(r.name for r in requests).items()))
    data = cached(history, ("dashboard",), lambda: _dashboard(history))
    # the charts in the page's order, the queue's last
    figures = {**data["charts"], "queue": _queue_chart(len(requests), by_package)}
    return {**data, "queue_depth": len(requests), "charts": figures}


@functools.lru_cache(maxsize=32)
def _queue_chart(depth: int, by_package: tuple) -> str:
    return charts.queue_depth(depth, Counter(dict(by_package)))


#: the status cards' order: what is done, then what needs a look
CARD_ORDER = ("built", "cached", "reused", "fetched", "failed", "missing", "invalid", "skipped",
              "pending")


def status_cards(history: History) -> dict[str, Any]:
    """Packages per current status (the cards), and the event totals shown beside them."""
    return dict(cached(history, ("cards",), lambda: _status_cards(history)))


def _status_cards(history: History) -> dict[str, Any]:
    by_status = stats.packages_by_status(history)
    rank = {s: i for i, s in enumerate(CARD_ORDER)}
    counts = dict(sorted(by_status.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
    events = history.status_counts()
    return {"counts": counts, "packages": sum(counts.values()),
            "attempts": events.get("attempt", 0), "events": sum(events.values())}


def events_frame(history: History):
    """The newest events as a frame, shared by the dashboard and /api/stats."""
    return cached(history, ("frame",), lambda: stats.events_frame(history))


def _dashboard(history: History) -> dict[str, Any]:
    df = events_frame(history)
    return {
        **status_cards(history),
        "recent": history.recent(25),
        "failures": history.events_with_status("failed", 10),
        "top_failures": history.top_failures(10),
        "top_slowest": history.top_slowest(10),
        "charts": charts.history_charts(df),
    }


def history_stats(history: History) -> dict[str, Any]:
    """What /api/stats says of the history, once per state of it."""
    return cached(history, ("stats",), lambda: _history_stats(history))


def _history_stats(history: History) -> dict[str, Any]:
    cards = status_cards(history)
    df = events_frame(history)
    over_time = stats.outcomes_over_time(df)
    over_time["bucket"] = over_time["bucket"].astype(str)
    return {
        "status_counts": history.status_counts(),
        "events": cards["events"],
        "packages": cards["packages"],
        "packages_by_status": cards["counts"],
        "failure_rate": stats.failure_rate(df).to_dict("records"),
        "variant_success": stats.variant_success(df).to_dict("records"),
        "outcomes_over_time": over_time.to_dict("records"),
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
            line_no = h.get("line_no")
            return logs.FirstError(line_no if isinstance(line_no, int) else 0,
                                   h["line"].strip()[:ERROR_LINE_MAX])
    return None


class _Logs:
    """find_logs once per version: a page asks for the log of many events."""

    def __init__(self, settings: PanelSettings):
        self.settings = settings
        self.seen: dict[str, list[logs.LogFile]] = {}

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


def _package_history(history: History, name: str) -> dict[str, Any]:
    """What the package page shows of the history, once per state of it."""
    return {
        "summary": history.package_summary(name),
        "events": history.recent(200, name),
        "failures": history.events_with_status("failed", 5, name),
        "variants": stats.variant_history(stats.events_frame(history, name)),
    }


def package(
    name: str, history: History, queue: RetryQueue, settings: PanelSettings, entries: list
) -> dict[str, Any] | None:
    part = cached(history, ("package", name), lambda: _package_history(history, name))
    summary = dict(part["summary"])
    queued = [r for r in queue.requests() if r.name == name]
    if not summary["events"] and not queued:
        return None
    # copies: the cached rows stay as they are, whatever this request adds to its own
    events = [dict(e) for e in part["events"]]
    failures = [dict(f) for f in part["failures"]]
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
        "variants": [dict(v) for v in part["variants"]],
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
