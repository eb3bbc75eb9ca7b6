"""The retry queue, the worker trigger and the session cookie: everything WORKER_TOKEN guards.

Every POST/PUT/DELETE here also passes `deps.guard_state_change` (applied to the whole app):
same origin, and a JSON body, or the package page's form with its CSRF token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from refinery_lib.retry_queue import (
    DeadLetter,
    RetryQueue,
    RetryRequest,
    packages_from_text,
    steps_from_text,
)

from .deps import Authorized, CatalogDep, HistoryDep, Name, QueueDep, Settings, Worker, token_ok
from .routes_api import json_bytes, json_response
from .security import CSRF_FIELD, FORM_TYPE, media_type
from .sessions import (
    SESSION_COOKIE,
    SessionStore,
    clear_session_cookie,
    get_sessions,
    set_session_cookie,
)
from .trigger import WorkerUnavailable
from .views import package as package_view

router = APIRouter(tags=["queue"])

RequestId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{8,64}$")]


class RecipeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(None, description="PEP 440 version to build ('' = as planned)")
    python_tag: str | None = Field(None, description="cp311 (or 3.11); '' = the worker's")
    platform_tag: str | None = Field(None, description="e.g. manylinux2014_s390x")
    recipe_steps: list[list[str]] | None = Field(
        None, description="commands (argument lists) run in the builder before the build")
    recipe_steps_text: str | None = Field(
        None, description="alternative to recipe_steps: one shell-quoted command per line")
    system_packages: list[str] | None = Field(None, description="dnf/apt package names")
    system_packages_text: str | None = Field(
        None, description="alternative to system_packages: names separated by blanks")
    note: str | None = Field(None, max_length=2000)

    def changes(self) -> dict[str, Any]:
        """The fields that were given, with the text forms parsed."""
        out = {k: v for k, v in self.model_dump(exclude_unset=True).items()
               if v is not None and not k.endswith("_text") and k != "use_hints"}
        if self.recipe_steps_text is not None:
            out["recipe_steps"] = steps_from_text(self.recipe_steps_text)
        if self.system_packages_text is not None:
            out["system_packages"] = packages_from_text(self.system_packages_text)
        return out


class RetryIn(RecipeFields):
    use_hints: bool = Field(
        True, description="when no recipe is given, take the suggested one from the hints")


class QueueAdd(RecipeFields):
    name: str


class Reorder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[str, Field(pattern=r"^[0-9a-f]{8,64}$")]]


class QueuedRequest(BaseModel):
    id: str
    name: str
    version: str
    python_tag: str
    platform_tag: str
    recipe_steps: list[list[str]]
    system_packages: list[str]
    note: str
    created: float


class DeadOut(BaseModel):
    id: str
    name: str
    reason: str = Field(description="why the worker could not run it")
    failed: float
    request: dict[str, Any] = Field(description="the request as it was queued")


class QueueOut(BaseModel):
    length: int
    requests: list[QueuedRequest]
    dead: list[DeadOut] = Field(
        default_factory=list,
        description="requests the worker could not run: never drained again; delete them or "
                    "re-queue them (POST /api/queue/dead/{id}/requeue)")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=1024)


def _dead_out(letter: DeadLetter) -> dict[str, Any]:
    return {**letter.to_json(), "name": letter.name}


QUEUE_OUT = TypeAdapter(QueueOut)


def _out(queue: RetryQueue) -> dict[str, Any]:
    items = queue.requests()
    return {"length": len(items), "requests": [r.to_json() for r in items],
            "dead": [_dead_out(d) for d in queue.dead()]}


@router.get("/api/queue", response_model=QueueOut, dependencies=[Authorized])
def list_queue(queue: QueueDep):
    # the Response made here: the validation takes no second trip through the thread pool
    return json_response(json_bytes(QUEUE_OUT, _out(queue)))


@router.post("/api/queue", response_model=QueuedRequest, status_code=201,
             dependencies=[Authorized])
def add_to_queue(body: QueueAdd, queue: QueueDep):
    changes = body.changes()
    changes.pop("name", None)
    return queue.add(RetryRequest(name=body.name, **changes)).to_json()


@router.put("/api/queue/{request_id}", response_model=QueuedRequest, dependencies=[Authorized])
def edit_queued(request_id: RequestId, body: RecipeFields, queue: QueueDep):
    return queue.update(request_id, **body.changes()).to_json()


@router.delete("/api/queue/{request_id}", response_model=QueuedRequest,
               dependencies=[Authorized])
def delete_queued(request_id: RequestId, queue: QueueDep):
    return queue.delete(request_id).to_json()


@router.post("/api/queue/reorder", response_model=QueueOut, dependencies=[Authorized])
def reorder_queue(body: Reorder, queue: QueueDep):
    """The named requests first, in this order; the others keep theirs after them."""
    queue.reorder(body.ids)
    return _out(queue)


@router.post("/api/queue/dead/{dead_id}/requeue", response_model=QueuedRequest,
             status_code=201, dependencies=[Authorized])
def requeue_dead(dead_id: RequestId, queue: QueueDep):
    """Put a dead letter back at the end of the queue (validated again: 422 if it fails)."""
    return queue.revive(dead_id).to_json()


@router.delete("/api/queue/dead/{dead_id}", response_model=DeadOut, dependencies=[Authorized])
def delete_dead(dead_id: RequestId, queue: QueueDep):
    return _dead_out(queue.delete_dead(dead_id))


async def retry_body(request: Request) -> tuple[RetryIn, bool]:
    """The retry as JSON (API, the page's script) or as the package page's plain form (no
    script); parsing only. The form's CSRF token was checked by guard_state_change."""
    is_form = media_type(request) == FORM_TYPE
    try:
        if is_form:
            form = await request.form()
            data: Any = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
            data["use_hints"] = False  # the form shows the suggestion already, as edited
        else:
            return RetryIn.model_validate_json(await request.body() or b"{}"), False
        return RetryIn.model_validate(data), True
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from exc


_RETRY_SCHEMA = RetryIn.model_json_schema()


@router.post(
    "/package/{name}/retry",
    status_code=201,
    response_model=QueuedRequest,
    dependencies=[Authorized],
    openapi_extra={"requestBody": {"content": {
        "application/json": {"schema": _RETRY_SCHEMA},
        # the package page's form: the same fields plus csrf_token (from the page)
        "application/x-www-form-urlencoded": {"schema": _RETRY_SCHEMA},
    }}},
)
def retry_package(
    name: Name,
    settings: Settings,
    queue: QueueDep,
    history: HistoryDep,
    entries: CatalogDep,
    parsed: Annotated[tuple[RetryIn, bool], Depends(retry_body)],
):
    """Queue a rebuild of `name`; without a recipe, the one suggested by its failures' hints."""
    body, is_form = parsed
    changes = body.changes()
    view = package_view(name, history, queue, settings, entries)
    if view is not None:
        for key, value in view["retry"].items():
            if key in ("recipe_steps", "system_packages") and not body.use_hints:
                continue
            changes.setdefault(key, value)
    req = queue.add(RetryRequest(name=name, **changes))
    if is_form:
        return RedirectResponse(f"/queue#req-{req.id}", status_code=303)
    return JSONResponse(req.to_json(), status_code=201)


@router.post("/api/worker/trigger", status_code=202, tags=["worker"], dependencies=[Authorized])
def trigger_worker(worker: Worker) -> dict[str, Any]:
    """Drain the queue now: in this process, or through the worker service's webhook."""
    try:
        result = worker.trigger()
    except WorkerUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    if not result.get("started") and result.get("status") == "running":
        raise HTTPException(409, "the worker is already running")
    return result


@router.get("/api/worker/status", tags=["worker"], dependencies=[Authorized])
async def worker_status(worker: Worker) -> dict[str, Any]:
    # in memory: on the event loop, no trip through the thread pool
    return worker.status()


@router.post("/api/session/token", tags=["auth"])
def session_token(
    request: Request,
    response: Response,
    settings: Settings,
    sessions: Annotated[SessionStore, Depends(get_sessions)],
    body: TokenIn | None = None,
    x_worker_token: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Check the token (X-Worker-Token header or JSON `{"token": ...}`) and start a session.

    The cookie holds a new random session id (HttpOnly, SameSite=Strict, Secure over https),
    never the token; a session the browser had before is ended (no fixation).
    """
    if not settings.token:
        return {"ok": True, "auth_required": False}
    supplied = x_worker_token or (body.token if body else None)
    if not supplied:
        raise HTTPException(401, "give the token in X-Worker-Token or as JSON {\"token\": ...}")
    if not token_ok(settings, supplied):
        raise HTTPException(403, "wrong worker token")
    sessions.end(request.cookies.get(SESSION_COOKIE))
    set_session_cookie(response, request, sessions.create(), max_age=int(sessions.lifetime))
    return {"ok": True, "auth_required": True}


@router.delete("/api/session/token", tags=["auth"])
def end_session(
    request: Request, response: Response,
    sessions: Annotated[SessionStore, Depends(get_sessions)],
) -> dict[str, Any]:
    """Log out: the session is forgotten here, so a copied cookie stops working too."""
    sessions.end(request.cookies.get(SESSION_COOKIE))
    clear_session_cookie(response, request)
    return {"ok": True}
