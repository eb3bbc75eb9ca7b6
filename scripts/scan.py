"""Snakemake adapter: scan the input folder into results/scan/inventory.json."""

import sys

sys.path.insert(0, str(__import__("pathlib").Path(snakemake.scriptdir).parent))

from refinery_lib.files import write_json  # noqa: E402
from refinery_lib.wheels import scan_wheel  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

settings = script_settings(snakemake)
records = [scan_wheel(__import__("pathlib").Path(p)).to_json() for p in snakemake.input.wheels]
write_json(snakemake.output.inventory, {"input": str(settings.paths.input), "wheels": records})
