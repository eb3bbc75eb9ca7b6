"""The API's browsable docs, /docs (Swagger UI) and /redoc, with every file served locally.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and start Swagger UI with an inline
script: offline they are blank, and the panel's CSP (no inline scripts, nothing from other
origins) would block them anyway. These pages load the same programs from the
`fastapi-standalone-docs` package (a copy of swagger-ui-dist and ReDoc's standalone bundle)
under /vendor/, and start Swagger UI from /static/api-docs.js.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from .templating import make_templates

ASSET_PACKAGE = "fastapi-standalone-docs"
#: URL of each file under /vendor/ -> (path inside the package's static folder, media type);
#: only these are served, whatever else the package holds
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui/swagger-ui-bundle.js": ("swagger/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui/swagger-ui.css": ("swagger/swagger-ui.css", "text/css"),
    "redoc/redoc.standalone.js": ("redoc/redoc.standalone.js", "text/javascript"),
    "redoc/logo-mini.svg": ("redoc/logo-mini.svg", "image/svg+xml"),
}

router = APIRouter(include_in_schema=False)
templates = make_templates()


def asset_root() -> Path | None:
    """The package's static folder, found without importing it: only its files are used,
    never its code (which would replace FastAPI's docs functions when called)."""
    return _asset_root()


@functools.cache  # an import system search: once per process, not on every page
def _asset_root() -> Path | None:
    spec = importlib.util.find_spec(ASSET_PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "static"
    return root if root.is_dir() else None


def asset_path(name: str) -> Path | None:
    """The file behind /vendor/`name`, when it is one of ASSETS and installed."""
    root = asset_root()
    if root is None or name not in ASSETS:
        return None
    path = root / ASSETS[name][0]
    return path if path.is_file() else None


def docs_available(*names: str) -> bool:
    return all(asset_path(n) is not None for n in names)


@router.get("/vendor/swagger-ui/{name}")
def swagger_asset(name: str) -> FileResponse:
    return _serve(f"swagger-ui/{name}")


@router.get("/vendor/redoc/{name}")
def redoc_asset(name: str) -> FileResponse:
    return _serve(f"redoc/{name}")


@router.get("/redoc/logo-mini.svg")
def redoc_logo() -> FileResponse:
    # ReDoc's sidebar asks for its logo relative to the page
    return _serve("redoc/logo-mini.svg")


def _serve(name: str) -> FileResponse:
    path = asset_path(name)
    if path is None:
        raise HTTPException(404, f"no vendored file {name!r} (is {ASSET_PACKAGE} installed?)")
    return FileResponse(path, media_type=ASSETS[name][1],
                        headers={"Cache-Control": "public, max-age=86400"})


def _page(request: Request, template: str, needs: tuple[str, ...]) -> HTMLResponse:
    ready = docs_available(*needs)
    return templates.TemplateResponse(
        request, template,
        {"openapi_url": request.app.openapi_url, "ready": ready, "package": ASSET_PACKAGE},
        status_code=200 if ready else 503)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, "api_docs.html",
                 ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css"))


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    return _page(request, "redoc.html", ("redoc/redoc.standalone.js",))
