"""Snakemake adapter: build one package; a failure fails the job (quietly) and leaves a record."""

from pathlib import Path

from refinery_lib.steps import run_build
from refinery_lib.workflow import build_failure_exits, script_settings

with build_failure_exits():
    run_build(
        script_settings(snakemake),
        snakemake.wildcards.key,
        Path(snakemake.input.sdist),
        Path(snakemake.output.outcome),
        Path(snakemake.input.buildenv),
    )
