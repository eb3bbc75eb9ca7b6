"""The workflow's static files: schema defaults match config.yaml, envs are pinned, rules thin."""

import re
from importlib import metadata

import jsonschema
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def test_config_validates_and_every_property_is_documented():
    schema = yaml.safe_load((REPO / "config/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    jsonschema.validate(config, schema)

    def walk(node, path):
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{path}{name} has no description"
            if path == "" or "default" in node:
                assert "default" in prop or name in ("version", "env"), f"{path}{name}: no default"
            walk(prop, f"{path}{name}.")

    walk(schema, "")


def test_envs_are_pinned_and_used():
    used = set()
    for rule_file in (REPO / "rules").glob("*.smk"):
        used |= set(re.findall(r'"\.\./envs/([\w-]+\.yaml)"', rule_file.read_text()))
    envs = {p.name for p in (REPO / "envs").glob("*.yaml")}
    assert used and used == envs, "every env is used by a rule, every rule env exists"
    for name in envs:
        env = yaml.safe_load((REPO / "envs" / name).read_text())
        assert env["channels"] and env["dependencies"]
        for dep in env["dependencies"]:
            assert re.fullmatch(r"[\w.-]+ =[\w.*]+", dep), f"{name}: {dep!r} is not pinned"


def test_rules_are_thin():
    inline_jobs = 0
    for rule_file in (REPO / "rules").glob("*.smk"):
        text = rule_file.read_text()
        assert "shell=True" not in text and "lambda" not in text
        # a `run:` job is one call of an adapter in scripts/, in Snakemake's process
        for body in re.findall(r"^    run:\n((?:        .*\n|\n)*)", text, re.M):
            call = re.fullmatch(
                r'\s*inline\("(\w+\.py)", input, output, params, wildcards, log\)\s*', body
            )
            assert call, f"{rule_file.name}: run: holds logic: {body!r}"
            assert (REPO / "scripts" / call.group(1)).is_file()
            inline_jobs += 1
    assert inline_jobs >= 5


def test_every_script_is_a_one_call_adapter():
    """A script imports the installed refinery_lib (the Snakefile puts a checkout's on the
    path) and calls one step of refinery_lib.steps with the job's settings and paths: no
    sys.path edits, no logic (a failed build's quiet exit wraps its call)."""
    import ast

    from refinery_lib import steps

    called = set()
    for script in sorted((REPO / "scripts").glob("*.py")):
        text = script.read_text()
        assert "sys.path" not in text and "noqa" not in text, script.name
        tree = ast.parse(text)
        doc, *imports, statement = tree.body
        assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant), script.name
        assert all(isinstance(i, ast.ImportFrom) for i in imports), script.name
        if isinstance(statement, ast.With):
            (item,) = statement.items
            assert ast.unparse(item.context_expr) == "build_failure_exits()", script.name
            (statement,) = statement.body
        assert isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
        step = ast.unparse(statement.value.func)
        assert callable(getattr(steps, step, None)), f"{script.name} calls {step}"
        called.add(step)
    assert len(called) == len(list((REPO / "scripts").glob("*.py")))


def test_rules_name_their_files_through_the_workflow_files():
    """Every output, log and benchmark of a rule is an entry of settings.WorkflowFiles
    (`RESULTS.plan`, `RESULTS.outcome("{key}")`): no rule spells a path of its own."""
    for rule_file in sorted((REPO / "rules").glob("*.smk")):
        text = rule_file.read_text()
        for block in re.findall(r"^    (?:output|log|benchmark):\n((?:        .*\n)+)", text,
                                re.M):
            for line in block.splitlines():
                if line.strip().startswith("#"):
                    continue
                assert re.fullmatch(r"\s+(\w+=)?RESULTS\.\w+(\(\"[\w./{}]+\"\))?,?", line), (
                    f"{rule_file.name}: {line.strip()}")


#: conda-forge's names of distributions whose PyPI name differs
CONDA_NAMES = {"pyyaml": "pyyaml", "build": "python-build"}


def test_the_build_env_provides_what_the_build_step_imports():
    """`--sdm conda` runs scripts/build_wheel.py in envs/build.yaml's environment: every
    third-party distribution its imports load (refinery_lib.steps and all it pulls in, the
    hint catalog's loader included) must be there, listed or required by one that is. It
    lacked pyyaml, so the build step could not even start under conda."""
    import json
    import subprocess
    import sys

    probe = (
        "import sys, json, importlib.metadata as md\n"
        "before = set(sys.modules)\n"
        "import refinery_lib.steps\n"
        # what a failed build does: match its log against the hint catalog
        "from refinery_lib.hint_catalog import load_catalog\n"
        "load_catalog()\n"
        "dists = md.packages_distributions()\n"
        "tops = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted({d for t in tops if t not in sys.stdlib_module_names\n"
        "                         for d in dists.get(t, ())})))\n"
    )
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=REPO)
    loaded = {canonicalize_name(d) for d in json.loads(res.stdout)} - {"s390x-wheel-refinery"}
    assert loaded >= {"packaging", "pyyaml", "jsonschema"}, loaded
    # a distribution another loaded one requires (extras included: jsonschema loads idna when
    # it is there) comes with that one's conda package; the rest must be listed
    required_by_others = {
        canonicalize_name(Requirement(r).name)
        for d in loaded for r in (metadata.requires(d) or ())
    }
    needed = (loaded - required_by_others) | {"packaging", "pyyaml"}
    env = yaml.safe_load((REPO / "envs" / "build.yaml").read_text())
    provided = {dep.split(" =")[0] for dep in env["dependencies"]}
    missing = sorted(CONDA_NAMES.get(d, d) for d in needed if CONDA_NAMES.get(d, d) not in provided)
    assert not missing, f"envs/build.yaml lacks {missing}"
