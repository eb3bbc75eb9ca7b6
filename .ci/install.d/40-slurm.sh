#!/usr/bin/env bash
# Cluster capability: a real single-node SLURM (munge, slurmctld, slurmd from Debian's
# slurm-wlm), installed and started for the tests marked `slurm` (tests/cluster/), which run
# the workflow through snakemake-executor-plugin-slurm (a dev extra of the project). The test
# fixture calls the same script again, which returns at once when the cluster is already up.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash .ci/slurm/up.sh
