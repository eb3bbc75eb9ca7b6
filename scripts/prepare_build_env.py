"""Snakemake adapter: download every planned sdist's build requirements once, as wheels."""

from pathlib import Path

from refinery_lib.steps import run_prepare_build_env
from refinery_lib.workflow import script_settings

run_prepare_build_env(
    script_settings(snakemake),
    Path(snakemake.input.plan),
    Path(snakemake.output.record),
    Path(snakemake.log.pip),
)
