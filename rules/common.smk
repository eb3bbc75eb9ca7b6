# Input functions and shared values; no rules here.
import functools
import json
import os
from pathlib import Path

from refinery_lib.containers import snakemake_container
from refinery_lib.models import Action
from refinery_lib.safe_env import redact_data
from refinery_lib.scheduling import build_priorities, build_resources
from refinery_lib.settings import Settings
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
RESULTS = config.get("results", "results")


wildcard_constraints:
    key=r"[a-z0-9_]+-[A-Za-z0-9_.+!]+",


def requeue_record(wildcards):
    """Python dependencies failed builds were missing: a change re-plans (see requeue.py)."""
    path = SETTINGS.paths.requeue
    return [str(path)] if path.exists() else []


def input_listing(wildcards):
    if not SETTINGS.paths.input.is_dir():
        raise WorkflowError(f"input folder {SETTINGS.paths.input} does not exist")
    return listing_fingerprint(SETTINGS.paths.input)


def _plan_nodes():
    path = checkpoints.plan.get().output.plan
    return _read_plan(str(path), os.stat(path).st_mtime_ns)


@functools.cache
def _read_plan(path, _mtime):
    """Parsed once per version of plan.json: input functions ask for it per job."""
    with open(path) as fh:
        nodes = json.load(fh)["nodes"]
    return nodes, {n["key"]: n for n in nodes}


def _nodes_with(action):
    return [n for n in _plan_nodes()[0] if n["action"] == str(action)]


def _node(key):
    node = _plan_nodes()[1].get(key)
    if node is None:
        raise WorkflowError(f"{key} is not a build target of the current plan")
    return node


def aggregate_inputs(wildcards):
    """The records aggregation reads: batched reuse/fetch records and one outcome per build."""
    inputs = []
    if _nodes_with(Action.REUSE):
        inputs.append(f"{RESULTS}/reuse/reused.json")
    if _nodes_with(Action.FETCH):
        inputs.append(f"{RESULTS}/fetch/fetched.json")
    inputs += [f"{RESULTS}/outcomes/{n['key']}.json" for n in _nodes_with(Action.BUILD)]
    return inputs


def all_sdist_records(wildcards):
    return [f"{RESULTS}/sdists/{n['key']}.json" for n in _nodes_with(Action.BUILD)]


def build_dependencies(wildcards):
    """A dependency built here (or fetched) is an input of its dependents' builds."""
    node = _node(wildcards.key)
    deps = [f"{RESULTS}/outcomes/{k}.json" for k in node["build_deps"]]
    if node.get("fetch_deps"):
        deps.append(f"{RESULTS}/fetch/fetched.json")
    return deps


def sdist_params(wildcards):
    src = _node(wildcards.key)["source"] or {}
    return {k: src.get(k, "") for k in ("filename", "url", "sha256")}


def node_build_params(wildcards):
    """What a build depends on besides its inputs: changes here rerun that package only."""
    return build_params(_node(wildcards.key), SETTINGS)


def _build_priorities():
    names = [n["name"] for n in _nodes_with(Action.BUILD)]
    return build_priorities(SETTINGS.paths.history_db, names, config.get("schedule", "shortest-first"))


def build_priority(wildcards):
    return _build_priorities().get(_node(wildcards.key)["name"], 0)


def _build_resources(wildcards, attempt):
    return build_resources(SETTINGS.paths.history_db, _node(wildcards.key)["name"], attempt=attempt)


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
    run_inline(Path(workflow.basedir) / "scripts" / script, input=input, output=output,
               params=params, wildcards=wildcards, log=log, config=config)
