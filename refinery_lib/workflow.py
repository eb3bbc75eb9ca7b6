"""Glue between Snakemake and the domain: what scripts and Snakefile handlers call."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from .settings import Settings


def setup_logging(log_path: str | None, verbose: bool = False) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )

    def _log_uncaught(kind, exc, tb):
        # scripts fail by raising: the job's log must say why, not only the console
        logging.getLogger("refinery").error("step failed: %s", exc, exc_info=(kind, exc, tb))

    sys.excepthook = _log_uncaught


def script_settings(smk: Any) -> Settings:
    """Settings of a `script:` job, with its log file set up."""
    setup_logging(smk.log[0] if smk.log else None, bool(smk.config.get("verbose")))
    return Settings.from_config(smk.config)


def build_params(node: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Only what changes a package's build: so that a change reruns that package alone."""
    src = node.get("source") or {}
    return {
        "name": node["name"],
        "version": node["version"],
        "sdist_sha256": src.get("sha256", ""),
        "sdist": src.get("filename", ""),
        "python": settings.target.python,
        "platform": settings.target.platform_tag,
        "builder": settings.builder_kind,
        "variants": {n: repr(settings.variants[n]) for n in settings.variant_order},
        "override": settings.overrides.get(node["name"], {}),
    }


def report_run(settings: Settings, success: bool) -> None:
    """onsuccess/onerror: make sure the manifest covers the run, print the summary table.

    After a failed job (with --keep-going) the aggregate rule cannot run, so the same
    aggregation runs here over whatever the jobs produced, failures included.
    """
    from .aggregate import aggregate, summary_table
    from .files import read_json

    plan = settings.paths.results / "plan" / "plan.json"
    if not plan.exists():
        print("refinery: no plan was made; see the errors above", file=sys.stderr)
        return
    if success and settings.paths.manifest.exists():
        manifest = read_json(settings.paths.manifest)
    else:
        manifest = aggregate(settings)
    manifest["path"] = str(settings.paths.manifest)
    if not os.environ.get("REFINERY_SUMMARY_BY_CLI"):
        print(summary_table(manifest), file=sys.stderr)
    if success and not manifest.get("ok", False):
        sys.exit(1)
