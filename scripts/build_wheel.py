"""Snakemake adapter: build one package; a failure fails the job (quietly) and leaves a record."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from refinery_lib.steps import run_build  # noqa: E402
from refinery_lib.workflow import build_failure_exits, script_settings  # noqa: E402

with build_failure_exits():
    run_build(
        script_settings(snakemake),
        snakemake.wildcards.key,
        Path(snakemake.input.sdist),
        Path(snakemake.output.outcome),
        Path(snakemake.input.buildenv),
    )
