"""Snakemake adapter: scan the input folder into the inventory."""

from pathlib import Path

from refinery_lib.steps import scan_input
from refinery_lib.workflow import script_settings

scan_input(script_settings(snakemake), Path(snakemake.output.inventory))
