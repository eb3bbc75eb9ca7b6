"""Snakemake adapter: copy every reusable input wheel (one batched job)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from refinery_lib.steps import run_reuse  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

run_reuse(
    script_settings(snakemake),
    Path(snakemake.input.inventory),
    Path(snakemake.input.plan),
    Path(snakemake.output.record),
)
