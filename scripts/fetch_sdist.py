"""Snakemake adapter: download one sdist into the cache."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from refinery_lib.steps import run_fetch_sdist  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

run_fetch_sdist(script_settings(snakemake), snakemake.wildcards.key, Path(snakemake.output.record))
