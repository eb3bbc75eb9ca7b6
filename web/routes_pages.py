"""HTML pages: dashboard, package, hint catalog, queue."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from refinery_lib.history import History
from refinery_lib.queue import RetryQueue, steps_to_text

from . import catalog, views
from .deps import (
    Name,
    Settings,
    Worker,
    get_catalog,
    get_history,
    get_queue,
    has_valid_token,
    history_exists,
)
from .sessions import SESSION_COOKIE, get_sessions, new_sid, plausible_sid, set_session_cookie
from .templating import make_templates

router = APIRouter(include_in_schema=False)
templates = make_templates()

HistoryDep = Annotated[History, Depends(get_history)]
QueueDep = Annotated[RetryQueue, Depends(get_queue)]
CatalogDep = Annotated[list, Depends(get_catalog)]


def render(request: Request, template: str, settings, status_code: int = 200, **context: Any):
    """A page; its forms carry a CSRF token tied to the visitor's session cookie, which a
    visitor without one gets here (an anonymous id, not a login)."""
    sid = request.cookies.get(SESSION_COOKIE)
    fresh = None if plausible_sid(sid) else new_sid()
    context.update(settings=settings, auth_ok=has_valid_token(request, settings),
                   steps_to_text=steps_to_text, page=template.removesuffix(".html"),
                   csrf_token=get_sessions(request).csrf_token(fresh or sid))
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    if fresh:
        set_session_cookie(response, request, fresh)
    return response


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, settings: Settings, history: HistoryDep, queue: QueueDep,
              worker: Worker):
    data = views.dashboard(history, queue)
    return render(request, "dashboard.html", settings, worker=worker.status(),
                  history_exists=history_exists(history), **data)


@router.get("/package/")
def package_jump(name: Annotated[str, Query(max_length=200)] = ""):
    """The header's "open package" form without JavaScript."""
    return RedirectResponse(f"/package/{quote(name.strip(), safe='')}" if name.strip() else "/",
                            status_code=303)


@router.get("/package/{name}", response_class=HTMLResponse)
def package_page(request: Request, name: Name, settings: Settings, history: HistoryDep,
                 queue: QueueDep, entries: CatalogDep):
    data = views.package(name, history, queue, settings, entries)
    if data is None:
        return render(request, "not_found.html", settings, status_code=404,
                      what=f"package {name}", message="no events and no queued retries")
    return render(request, "package.html", settings, **data)


@router.get("/hints", response_class=HTMLResponse)
def hints_page(request: Request, settings: Settings, entries: CatalogDep,
               q: Annotated[str, Query(max_length=200)] = "",
               category: Annotated[str, Query(max_length=100)] = ""):
    found = catalog.search(entries, q, category)
    categories = sorted({e["category"] for e in entries if e["category"]})
    return render(request, "hints.html", settings, entries=found, total=len(entries), q=q,
                  category=category, categories=categories)


@router.get("/queue", response_class=HTMLResponse)
def queue_page(request: Request, settings: Settings, queue: QueueDep,
               worker: Worker):
    authed = has_valid_token(request, settings)
    # without the token the queue's contents stay hidden, as the API's are
    requests = queue.requests() if authed else []
    dead = queue.dead() if authed else []
    return render(request, "queue.html", settings, requests=requests, depth=len(queue),
                  dead=dead, worker=worker.status())
