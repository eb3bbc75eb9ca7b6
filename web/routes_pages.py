"""HTML pages: dashboard, package, hint catalog, queue."""

from __future__ import annotations

import hashlib
import io
import pickle
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from refinery_lib.retry_queue import steps_to_text

from . import catalog, views
from .deps import (
    CatalogDep,
    HistoryDep,
    Name,
    QueueDep,
    Settings,
    Worker,
    has_valid_token,
    history_exists,
)
from .sessions import SESSION_COOKIE, get_sessions, new_sid, plausible_sid, set_session_cookie
from .store import Store, damaged_message, store_for
from .templating import make_templates

router = APIRouter(include_in_schema=False)
templates = make_templates()


def history_problem(settings) -> str | None:
    """The banner every page shows while the history database is known to be damaged."""
    store = store_for(settings.db_path)
    problem = store.problem()
    return damaged_message(store.path, problem) if problem else None


#: pages as rendered, by a digest of everything their template sees: the same content is
#: rendered once, whoever asks (a template renders the same text from the same context, and
#: the digest costs a fraction of a rendering)
_pages = Store(Path("(rendered pages)"), size=64)
#: where the visitor's CSRF token goes in a page kept for everyone (a token is 64 hex digits)
_CSRF_SLOT = secrets.token_hex(32)
_NOT_SEEN = ("csrf_token", "steps_to_text")


def _render_once(template: str, context: dict[str, Any], csrf: str) -> str | None:
    """The page, from the kept ones when its context was rendered before; None when the
    context cannot be digested (then the caller renders it as usual). Templates get no
    `request`: what they show must be in the context, or pages would be shared wrongly."""
    seen = {k: v for k, v in context.items() if k not in _NOT_SEEN}
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=5)
    # no memo: the bytes depend on the values only, not on which of them are one object
    # (a name string shared in one request and copied in the next gave two digests)
    pickler.fast = True
    try:
        pickler.dump((template, seen))
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
        return None
    digest = hashlib.blake2b(buf.getbuffer(), digest_size=20).digest()

    def render_page() -> str:
        return templates.get_template(template).render({**context, "csrf_token": _CSRF_SLOT})

    return _pages.get(("page", digest), None, render_page, stale=False).replace(_CSRF_SLOT, csrf)


def render(request: Request, template: str, settings, status_code: int = 200, **context: Any):
    """A page; its forms carry a CSRF token tied to the visitor's session cookie, which a
    visitor without one gets here (an anonymous id, not a login)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    sid = cookie if plausible_sid(cookie) else new_sid()
    if "history_problem" not in context:
        context["history_problem"] = history_problem(settings)
    csrf = get_sessions(request).csrf_token(sid)
    context.update(settings=settings, auth_ok=has_valid_token(request, settings),
                   steps_to_text=steps_to_text, page=template.removesuffix(".html"),
                   csrf_token=csrf)
    html = _render_once(template, context, csrf)
    if html is not None:
        response = HTMLResponse(html, status_code=status_code)
    else:
        response = templates.TemplateResponse(request, template, context,
                                              status_code=status_code)
    if sid != cookie:
        set_session_cookie(response, request, sid)
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
