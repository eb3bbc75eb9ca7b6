"""Snakemake adapter: scan the input folder into results/scan/inventory.json."""

import sys

sys.path.insert(0, str(__import__("pathlib").Path(snakemake.scriptdir).parent))

from refinery_lib.steps import scan_input  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

scan_input(script_settings(snakemake), snakemake.output.inventory)
