"""Build logs: a page with the tail and a live view, the raw file, and the SSE stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from . import logs
from .deps import HistoryDep, Name, Settings, Version
from .routes_pages import render

router = APIRouter(tags=["logs"])

Attempt = Annotated[int | None, Query(ge=1, le=9999)]
Variant = Annotated[str | None, Query(pattern=logs.VARIANT_RE.pattern)]


def _choose(settings, name: str, version: str, attempt, variant):
    found = logs.find_logs(settings.logs_dir, name, version)
    return found, logs.pick(found, attempt, variant)


@router.get(
    "/logs/{name}/{version}",
    response_class=HTMLResponse,
    responses={200: {"content": {"application/json": {}, "text/html": {}}}},
)
def log_page(request: Request, name: Name, version: Version, settings: Settings,
             history: HistoryDep, attempt: Attempt = None, variant: Variant = None):
    """The chosen (default: newest) attempt log of name==version; JSON when asked for."""
    found, chosen = _choose(settings, name, version, attempt, variant)
    if not found and not any(e["version"] == version for e in history.recent(200, name)):
        raise HTTPException(404, f"no logs of {name} {version}")
    text, size, truncated = logs.tail_of(chosen)  # read from one safely opened descriptor
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({
            "name": name, "version": version, "text": text, "size": size,
            "truncated": truncated, "log": chosen.path.name if chosen else None,
            "logs": [{"attempt": f.attempt, "variant": f.variant, "size": f.size,
                      "url": f.url(name), "raw": f.url(name, "/raw")} for f in found],
        })
    stream = (chosen.url(name, "/stream") + f"&offset={size}" if chosen
              else f"/logs/{name}/{version}/stream")
    return render(request, "log.html", settings, name=name, version=version, logs=found,
                  chosen=chosen, text=text, size=size, truncated=truncated, stream_url=stream)


@router.get("/logs/{name}/{version}/raw", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}}}})
def raw_log(name: Name, version: Version, settings: Settings,
            attempt: Attempt = None, variant: Variant = None):
    """The whole log, streamed from the descriptor opened once (not FileResponse, which opens
    the path again: a symlink swapped in between would be followed)."""
    _, chosen = _choose(settings, name, version, attempt, variant)
    fh = logs.open_log(chosen) if chosen is not None else None
    if fh is None:
        raise HTTPException(404, f"no such log of {name} {version}")
    size = logs.size_of(fh)
    # text/plain and nosniff: a log holding HTML is never rendered as a page
    return StreamingResponse(logs.iter_file(fh, size), media_type="text/plain; charset=utf-8",
                             headers={"Content-Disposition": "inline",
                                      "Content-Length": str(size)})


@router.get("/logs/{name}/{version}/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
def stream_log(request: Request, name: Name, version: Version, settings: Settings,
               attempt: Attempt = None, variant: Variant = None,
               offset: Annotated[int, Query(ge=0)] = 0,
               idle: Annotated[float, Query(gt=0, le=3600)] = 900,
               last_event_id: Annotated[str | None, Header()] = None):
    """Server-sent events: one `message` per new log line (id = byte offset after it), a
    `reset` when the log was replaced by a rebuild, `idle` before closing after `idle` s."""
    if last_event_id and last_event_id.isdigit():
        offset = int(last_event_id)  # the browser reconnects where it left off

    def locate():
        return _choose(settings, name, version, attempt, variant)[1]

    tailer = logs.Tailer(locate, offset)
    return StreamingResponse(
        logs.stream(tailer, request.is_disconnected, idle), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
