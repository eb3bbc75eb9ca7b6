"""`refinery demo [DEST]`: the bundled example, refined for this machine, offline.

The example (a pure wheel and a C-extension wheel built for s390x, whose sdist sits in a small
local index) ships with the package, so an installed refinery runs it from any folder: only
DEST is written (DEST/output, DEST/cache)."""

from __future__ import annotations

from pathlib import Path

from .config import workflow_dir


def demo_argv(dest: Path, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The `refinery run` arguments of the demo, writing under `dest`."""
    examples = workflow_dir() / "examples"
    dest = dest.resolve()
    return [
        "--input", str(examples / "wheelhouse"),
        "--output", str(dest / "output"),
        "--cache", str(dest / "cache"),
        "--platform-tag", "native",
        "--index-url", (examples / "index" / "simple").as_uri(),
        "--config", str(examples / "demo.yaml"),
        *extra,
    ]

