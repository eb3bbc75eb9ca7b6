"""Snakemake adapter: download one sdist into the cache."""

from pathlib import Path

from refinery_lib.steps import run_fetch_sdist
from refinery_lib.workflow import script_settings

run_fetch_sdist(script_settings(snakemake), snakemake.wildcards.key, Path(snakemake.output.record))
