"""Read-only JSON APIs over the history and the hint catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter

from . import catalog, views
from .deps import CatalogDep, HistoryDep, Name, QueueDep, Settings, history_exists
from .store import Store, cached

router = APIRouter(prefix="/api", tags=["stats"])

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


FAILURES = TypeAdapter(list[Failure])
SLOWEST = TypeAdapter(list[Slow])
HINTS = TypeAdapter(list[Hint])
STATS = TypeAdapter(Stats)
ANY = TypeAdapter(dict[str, Any])


def json_bytes(adapter: TypeAdapter, value: Any) -> bytes:
    """What FastAPI answers for `value` with this response model (validated, then pydantic's
    dump_json), made here: a route that returns the Response itself can keep the bytes
    per history state, and its validation takes no extra trip through the thread pool."""
    return adapter.dump_json(adapter.validate_python(value), by_alias=True)


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


@router.get("/top-failures", response_model=list[Failure])
def top_failures(history: HistoryDep, limit: Limit = 10):
    return json_response(cached(history, ("top_failures.json", limit),
                                lambda: json_bytes(FAILURES, history.top_failures(limit))))


@router.get("/top-slowest", response_model=list[Slow])
def top_slowest(history: HistoryDep, limit: Limit = 10):
    return json_response(cached(history, ("top_slowest.json", limit),
                                lambda: json_bytes(SLOWEST, history.top_slowest(limit))))


#: /api/hints answers per catalog version and search (100 KB of JSON for the whole catalog)
_hint_answers = Store(Path("(hint answers)"), size=64)


@router.get("/hints", response_model=list[Hint])
def hints(entries: CatalogDep, settings: Settings,
          q: Annotated[str, Query(max_length=200)] = "",
          category: Annotated[str, Query(max_length=100)] = ""):
    def answer() -> bytes:
        return json_bytes(HINTS, catalog.search(entries, q, category))

    version = catalog.version(settings.hints_path)
    if version is None:
        return json_response(answer())
    return json_response(_hint_answers.get(("hints", version, q, category), None, answer,
                                           stale=False))


@router.get("/stats", response_model=Stats)
def stats_api(history: HistoryDep, settings: Settings, queue: QueueDep):
    """`status_counts` counts events (every attempt, rebuild and reuse); `packages_by_status`
    counts packages by their latest outcome, as the dashboard's cards do."""
    exists, depth, mode = history_exists(history), len(queue), settings.worker_mode
    return json_response(cached(history, ("stats.json", exists, depth, mode), lambda: json_bytes(
        STATS, {**views.history_stats(history),  # once per state of the history
                "history_exists": exists, "queue_depth": depth, "worker_mode": mode})))


@router.get("/packages/{name}", response_model=dict[str, Any])
def package_api(name: Name, history: HistoryDep, settings: Settings, queue: QueueDep,
                entries: CatalogDep) -> Response:
    """Summary, alerts, recent failures with hints, variant history and the suggested retry."""
    data = views.package(name, history, queue, settings, entries)
    if data is None:
        raise HTTPException(404, f"nothing known about {name}")
    data["queued"] = [r.to_json() for r in data["queued"]]
    for item in data["failures"] + data["attempts"]:
        log = item.pop("log")
        item["log_url"] = log.url(name) if log else None
    return json_response(json_bytes(ANY, data))
