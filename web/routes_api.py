"""Read-only JSON APIs over the history and the hint catalog."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from refinery_lib.history import History
from refinery_lib.queue import RetryQueue

from . import catalog, stats, views
from .deps import Name, Settings, get_catalog, get_history, get_queue, history_exists

router = APIRouter(prefix="/api", tags=["stats"])

HistoryDep = Annotated[History, Depends(get_history)]
Limit = Annotated[int, Query(ge=1, le=500)]


class Failure(BaseModel):
    package: str
    failures: int
    last_ts: float | None


class Slow(BaseModel):
    package: str
    avg_duration: float | None
    builds: int
    failures: int | None


class Hint(BaseModel):
    id: str
    category: str
    patterns: list[str]
    dnf: list[str]
    apt: list[str]
    steps: list[list[str]]
    note: str
    dnf_repos: list[str] = []


class Stats(BaseModel):
    status_counts: dict[str, int]
    events: int
    packages: int
    packages_by_status: dict[str, int]
    history_exists: bool
    queue_depth: int
    worker_mode: str
    failure_rate: list[dict[str, Any]]
    variant_success: list[dict[str, Any]]
    outcomes_over_time: list[dict[str, Any]]


@router.get("/top-failures", response_model=list[Failure])
def top_failures(history: HistoryDep, limit: Limit = 10):
    return history.top_failures(limit)


@router.get("/top-slowest", response_model=list[Slow])
def top_slowest(history: HistoryDep, limit: Limit = 10):
    return history.top_slowest(limit)


@router.get("/hints", response_model=list[Hint])
def hints(entries: Annotated[list, Depends(get_catalog)],
          q: Annotated[str, Query(max_length=200)] = "",
          category: Annotated[str, Query(max_length=100)] = ""):
    return catalog.search(entries, q, category)


@router.get("/stats", response_model=Stats)
def stats_api(history: HistoryDep, settings: Settings,
              queue: Annotated[RetryQueue, Depends(get_queue)]):
    """`status_counts` counts events (every attempt, rebuild and reuse); `packages_by_status`
    counts packages by their latest outcome, as the dashboard's cards do."""
    cards = views.status_cards(history)
    df = stats.events_frame(history)
    over_time = stats.outcomes_over_time(df)
    over_time["bucket"] = over_time["bucket"].astype(str)
    return {
        "status_counts": history.status_counts(),
        "events": cards["events"],
        "packages": cards["packages"],
        "packages_by_status": cards["counts"],
        "history_exists": history_exists(history),
        "queue_depth": len(queue),
        "worker_mode": settings.worker_mode,
        "failure_rate": stats.failure_rate(df).to_dict("records"),
        "variant_success": stats.variant_success(df).to_dict("records"),
        "outcomes_over_time": over_time.to_dict("records"),
    }


@router.get("/packages/{name}")
def package_api(name: Name, history: HistoryDep, settings: Settings,
                queue: Annotated[RetryQueue, Depends(get_queue)],
                entries: Annotated[list, Depends(get_catalog)]) -> dict[str, Any]:
    """Summary, alerts, recent failures with hints, variant history and the suggested retry."""
    data = views.package(name, history, queue, settings, entries)
    if data is None:
        raise HTTPException(404, f"nothing known about {name}")
    data["queued"] = [r.to_json() for r in data["queued"]]
    for item in data["failures"] + data["attempts"]:
        log = item.pop("log")
        item["log_url"] = log.url(name) if log else None
    return data
