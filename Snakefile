# s390x Wheel Refinery: input wheels -> scan -> plan (checkpoint) -> reuse/fetch/build -> manifest.
# `refinery` runs this same workflow; see README.md and DESIGN.md.
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# Run from a checkout, refinery_lib is imported from here (the rules, their `run:` jobs, and
# the `script:` jobs, whose sys.path Snakemake extends with this process's); installed, it is
# the package that holds this workflow (refinery_lib/_workflow)
if os.path.isdir(os.path.join(workflow.basedir, "refinery_lib")):
    sys.path.insert(0, workflow.basedir)


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


validate(config, "config/schemas/config.schema.yaml")


# light bookkeeping stays on the submit host; only builds become cluster jobs
localrules:
    all,
    prefetch,
    scan,
    plan,
    reuse_wheels,
    fetch_wheels,
    fetch_sdist,
    prepare_build_env,
    aggregate,


include: "rules/common.smk"
include: "rules/scan.smk"
include: "rules/plan.smk"
include: "rules/build.smk"
include: "rules/aggregate.smk"


rule all:
    default_target: True
    input:
        complete=rules.aggregate.output.complete,


rule prefetch:
    """Warm-up target: every sdist of the plan downloaded once, and the build requirements of
    them all as wheels, before parallel builds."""
    input:
        sdists=all_sdist_records,
        buildenv=rules.prepare_build_env.output.record,


onsuccess:
    if full_run():
        report_run(success=True)


onerror:
    if full_run():
        report_run(success=False)
