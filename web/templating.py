"""Jinja2 with autoescaping forced on: package metadata and logs come from strangers."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi.templating import Jinja2Templates

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _ts(value: float | None) -> str:
    if not value:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value)))


def duration_text(value: float | None) -> str:
    """Seconds as people read them: 12.5 s, 3.2 min, 1.5 h."""
    if value is None or value == "":
        return "-"
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _shjoin(argv) -> str:
    return shlex.join(str(a) for a in argv) if isinstance(argv, list | tuple) else str(argv)


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # everything, not only *.html: no template may opt out by its name
        undefined=jinja2.StrictUndefined,
        # the templates are package files: no stat of each one on every page
        auto_reload=False,
    )
    env.filters.update(ts=_ts, duration=duration_text, shjoin=_shjoin,
                       q=lambda s: quote(str(s), safe=""))
    return Jinja2Templates(env=env)
