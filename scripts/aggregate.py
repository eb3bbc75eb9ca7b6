"""Snakemake adapter: manifest, history, output index, closure check."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from refinery_lib.aggregate import aggregate  # noqa: E402
from refinery_lib.files import write_json  # noqa: E402
from refinery_lib.workflow import script_settings  # noqa: E402

manifest = aggregate(script_settings(snakemake))
write_json(
    snakemake.output.complete, {"run_id": manifest["run_id"], "summary": manifest["summary"]}
)
