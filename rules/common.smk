# Input functions and shared values; no rules here.
import json

from refinery_lib.models import Action
from refinery_lib.settings import Settings
from refinery_lib.wheels import list_input_files
from refinery_lib.workflow import build_params, report_run as _report_run

SETTINGS = Settings.from_config(config)
RESULTS = config.get("results", "results")
MANIFEST = str(SETTINGS.paths.manifest)

if not SETTINGS.paths.input.is_dir():
    raise WorkflowError(f"input folder {SETTINGS.paths.input} does not exist")


wildcard_constraints:
    key=r"[a-z0-9_]+-[A-Za-z0-9_.+!]+",


def input_wheels(wildcards):
    return [str(p) for p in list_input_files(SETTINGS.paths.input)]


def _plan_nodes():
    with checkpoints.plan.get().output.plan.open() as fh:
        return json.load(fh)["nodes"]


def _nodes_with(action):
    return [n for n in _plan_nodes() if n["action"] == str(action)]


def _node(key):
    for n in _plan_nodes():
        if n["key"] == key:
            return n
    raise WorkflowError(f"{key} is not a build target of the current plan")


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


def report_run(success):
    _report_run(SETTINGS, success)
