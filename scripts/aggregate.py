"""Snakemake adapter: manifest, history, output index, closure check, and the rule's mark."""

from pathlib import Path

from refinery_lib.steps import run_aggregate
from refinery_lib.workflow import script_settings

run_aggregate(script_settings(snakemake), Path(snakemake.output.complete))
