"""Snakemake adapter: the plan checkpoint."""

from pathlib import Path

from refinery_lib.steps import plan_workflow
from refinery_lib.workflow import script_settings

plan_workflow(
    script_settings(snakemake), Path(snakemake.input.inventory), Path(snakemake.output.plan)
)
