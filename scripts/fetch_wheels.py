"""Snakemake adapter: download the target wheels the plan found on the index (one batched job)."""

from pathlib import Path

from refinery_lib.steps import run_fetch
from refinery_lib.workflow import script_settings

run_fetch(script_settings(snakemake), Path(snakemake.input.plan), Path(snakemake.output.record))
