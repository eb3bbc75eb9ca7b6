#!/usr/bin/env bash
# Install the project with its dev extras, lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install --quiet -e '.[dev]'
ruff check .
snakemake --lint
python3 -m pytest -q "$@"
