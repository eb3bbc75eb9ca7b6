"""Snakemake adapter: download the target wheels the plan found on the index (one batched job)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from refinery_lib.steps import run_fetch  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

run_fetch(script_settings(snakemake), Path(snakemake.input.plan), Path(snakemake.output.record))
