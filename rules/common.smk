# Input functions and shared values; no rules here.
from pathlib import Path

from refinery_lib.container_presets import snakemake_container
from refinery_lib.errors import RefineryError
from refinery_lib.models import Action, Plan
from refinery_lib.safe_env import redact_data
from refinery_lib.scheduling import build_priorities, build_resources
from refinery_lib.settings import Settings, WorkflowFiles
from refinery_lib.workflow import (
    build_params,
    listing_fingerprint,
    report_run as _report_run,
    run_inline,
)

SETTINGS = Settings.from_config(config)
# image of the build rule's `container:` directive (--use-singularity / --sdm apptainer): the
# configured preset or image, rocky by default (see containers/ and docs)
BUILD_IMAGE = snakemake_container(
    config["builder"].get("preset") or "rocky",
    SETTINGS.target.arch,
    image=config["builder"].get("image") or None,
)
# the workflow's files as the rules name them: relative to Snakemake's working directory
RESULTS = WorkflowFiles(Path(config["results"]))


wildcard_constraints:
    key=r"[a-z0-9_]+-[A-Za-z0-9_.+!]+",


def missing_deps_record(wildcards):
    """Python dependencies failed builds were missing: a change re-plans (see missing_deps.py)."""
    path = SETTINGS.paths.missing_deps
    return [str(path)] if path.exists() else []


def input_listing(wildcards):
    if not SETTINGS.paths.input.is_dir():
        raise WorkflowError(f"input folder {SETTINGS.paths.input} does not exist")
    return listing_fingerprint(SETTINGS.paths.input)


def _plan():
    """The plan of this evaluation (Plan.from_file reads each version of the file once)."""
    return Plan.from_file(checkpoints.plan.get().output.plan)


def _node(key):
    try:
        return _plan().node(key)
    except RefineryError:
        raise WorkflowError(f"{key} is not a build target of the current plan") from None


def aggregate_inputs(wildcards):
    """The records aggregation reads: batched reuse/fetch records and one outcome per build."""
    plan = _plan()
    inputs = []
    if plan.nodes(Action.REUSE):
        inputs.append(RESULTS.reuse_record)
    if plan.nodes(Action.FETCH):
        inputs.append(RESULTS.fetch_record)
    inputs += [RESULTS.outcome(n.key) for n in plan.nodes(Action.BUILD)]
    return [str(p) for p in inputs]


def all_sdist_records(wildcards):
    return [str(RESULTS.sdist_record(n.key)) for n in _plan().nodes(Action.BUILD)]


def build_dependencies(wildcards):
    """A dependency built here (or fetched) is an input of its dependents' builds."""
    node = _node(wildcards.key)
    deps = [RESULTS.outcome(k) for k in node.build_deps]
    if node.fetch_deps:
        deps.append(RESULTS.fetch_record)
    return [str(p) for p in deps]


def sdist_params(wildcards):
    src = _node(wildcards.key).source or {}
    return {k: src.get(k, "") for k in ("filename", "url", "sha256")}


def node_build_params(wildcards):
    """What a build depends on besides its inputs: changes here rerun that package only."""
    return build_params(_node(wildcards.key), SETTINGS)


def _build_priorities():
    names = [n.name for n in _plan().nodes(Action.BUILD)]
    return build_priorities(SETTINGS.paths.history_db, names, config["schedule"])


def build_priority(wildcards):
    return _build_priorities().get(_node(wildcards.key).name, 0)


def _build_resources(wildcards, attempt):
    return build_resources(SETTINGS.paths.history_db, _node(wildcards.key).name, attempt=attempt)


def build_mem_mb(wildcards, attempt):
    return _build_resources(wildcards, attempt)["mem_mb"]


def build_runtime(wildcards, attempt):
    return _build_resources(wildcards, attempt)["runtime"]


def build_cpus(wildcards, attempt):
    return _build_resources(wildcards, attempt)["cpus_per_task"]


def full_run():
    """A run towards the manifest, not `prefetch` alone: only then are manifest and history due."""
    targets = {r.name for r in workflow.dag.targetrules}
    return not (targets or workflow.dag.targetfiles) or bool(targets & {"all", "aggregate"})


def report_run(success):
    _report_run(SETTINGS, success)


def inline(script, input, output, params, wildcards, log):
    """A scripts/ adapter run in this process: a `run:` job of a local rule, no new interpreter."""
    run_inline(
        Path(workflow.basedir) / "scripts" / script,
        input=input,
        output=output,
        params=params,
        wildcards=wildcards,
        log=log,
        config=config,
    )
