"""The retry queue, the worker trigger and the token cookie: everything WORKER_TOKEN guards."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refinery_lib.history import History
from refinery_lib.queue import (
    RetryQueue,
    RetryRequest,
    packages_from_text,
    steps_from_text,
)

from .deps import (
    TOKEN_COOKIE,
    Authorized,
    Name,
    Settings,
    Worker,
    get_catalog,
    get_history,
    get_queue,
    token_ok,
)
from .trigger import WorkerUnavailable
from .views import package as package_view

router = APIRouter(tags=["queue"])

QueueDep = Annotated[RetryQueue, Depends(get_queue)]
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


class QueueOut(BaseModel):
    length: int
    requests: list[QueuedRequest]


def _out(queue: RetryQueue) -> dict[str, Any]:
    items = queue.requests()
    return {"length": len(items), "requests": [r.to_json() for r in items]}


@router.get("/api/queue", response_model=QueueOut, dependencies=[Authorized])
def list_queue(queue: QueueDep):
    return _out(queue)


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


async def retry_body(request: Request) -> tuple[RetryIn, bool]:
    """The retry as JSON (API) or as the package page's form; parsing only, no I/O."""
    ctype = request.headers.get("content-type", "")
    is_form = ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))
    try:
        if is_form:
            form = await request.form()
            data: Any = {k: v for k, v in form.items() if isinstance(v, str)}
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
        "application/x-www-form-urlencoded": {"schema": _RETRY_SCHEMA},
    }}},
)
def retry_package(
    name: Name,
    settings: Settings,
    queue: QueueDep,
    history: Annotated[History, Depends(get_history)],
    entries: Annotated[list, Depends(get_catalog)],
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
def worker_status(worker: Worker) -> dict[str, Any]:
    return worker.status()


@router.post("/api/session/token", tags=["auth"])
def session_token(
    response: Response,
    settings: Settings,
    token: Annotated[str | None, Query(description="the WORKER_TOKEN")] = None,
    x_worker_token: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Check a token and keep it in an HttpOnly, SameSite=Strict cookie for the browser."""
    if not settings.token:
        return {"ok": True, "auth_required": False}
    supplied = x_worker_token or token
    if not supplied:
        raise HTTPException(401, "give the token as ?token= or X-Worker-Token")
    if not token_ok(settings, supplied):
        raise HTTPException(403, "wrong worker token")
    response.set_cookie(TOKEN_COOKIE, supplied, httponly=True, samesite="strict", path="/",
                        max_age=7 * 86400)
    return {"ok": True, "auth_required": True}


@router.delete("/api/session/token", tags=["auth"])
def end_session(response: Response) -> dict[str, Any]:
    response.delete_cookie(TOKEN_COOKIE, path="/", httponly=True, samesite="strict")
    return {"ok": True}
