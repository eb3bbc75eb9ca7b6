"""The workflow's static files: schema defaults match config.yaml, envs are pinned, rules thin."""

import re

import jsonschema
import yaml

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
    for script in (REPO / "scripts").glob("*.py"):
        body = [ln for ln in script.read_text().splitlines() if ln.strip()]
        assert len(body) <= 15, f"{script.name} holds logic: move it to refinery_lib"
