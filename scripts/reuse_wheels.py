"""Snakemake adapter: copy every reusable input wheel (one batched job)."""

from pathlib import Path

from refinery_lib.steps import run_reuse
from refinery_lib.workflow import script_settings

run_reuse(
    script_settings(snakemake),
    Path(snakemake.input.inventory),
    Path(snakemake.input.plan),
    Path(snakemake.output.record),
)
