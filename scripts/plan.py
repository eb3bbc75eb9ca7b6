"""Snakemake adapter: the plan checkpoint."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from refinery_lib.steps import plan_workflow  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

plan_workflow(
    script_settings(snakemake), Path(snakemake.input.inventory), Path(snakemake.output.plan)
)
