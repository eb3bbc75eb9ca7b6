"""Snakemake adapter: download every planned sdist's build requirements once, as wheels."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from refinery_lib.steps import run_prepare_build_env  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

run_prepare_build_env(
    script_settings(snakemake),
    Path(snakemake.input.plan),
    Path(snakemake.output.record),
    Path(snakemake.log.pip),
)
