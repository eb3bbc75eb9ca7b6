"""Per-package overrides are one validated model (issue #15): the user's config, the cross
builder's defaults and the retry worker's recipes are all read through `PackageOverride`; an
unknown key is a one-line ConfigError naming the package and the key; and what is hashed into
the cache key is the mapping the config wrote."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from refinery_lib import cli, overrides
from refinery_lib.build import BuildIdentity
from refinery_lib.config import workflow_dir
from refinery_lib.errors import ConfigError
from refinery_lib.overrides import PackageOverride, cross_overrides
from refinery_lib.retry_queue import RetryRequest
from refinery_lib.retry_worker import overrides_for
from tests.fixtures.config import unit_settings


def test_an_unknown_key_names_the_package_and_the_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        unit_settings(tmp_path, overrides={"NumPy": {"version": "1.26.4", "enviroment": {}}})
    message = str(caught.value)
    assert message.startswith("config: overrides.NumPy: unknown key 'enviroment' (known: ")
    assert "env," in message and "\n" not in message


@pytest.mark.parametrize(("entry", "words"), [
    ({"variants": "isolated"}, "overrides.a.variants must be a list of strings"),
    ({"env": {"A": 1}}, "overrides.a.env must map variable names to strings"),
    ({"version": 1.0}, "overrides.a.version must be a string, not float"),
    ({"config_settings": ["=x"]}, "overrides.a.config_settings: '=x' is not KEY=VALUE"),
    ({"recipe_steps": [["make"], []]}, "overrides.a.recipe_steps[1] is an empty command"),
    (None, "overrides.a must be a mapping of settings, not NoneType"),
])
def test_a_value_of_the_wrong_shape_is_named(tmp_path, entry, words):
    with pytest.raises(ConfigError, match=r"^config: " + words.replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        unit_settings(tmp_path, overrides={"a": entry})


def test_settings_hold_typed_overrides_by_canonical_name(tmp_path):
    s = unit_settings(tmp_path, "native", overrides={
        "My_Pkg": {"version": "2.0", "recipe_steps": [["make", "x"]], "env": {"A": "1"},
                   "build_constraints": ["cython<3"]}})
    o = s.override("my-pkg")
    assert o.version == "2.0" and o.recipe_steps == (("make", "x"),)
    assert o.recipe().steps == (("make", "x"),) and o.recipe().env == {"A": "1"}
    assert s.plan.pins == {"my-pkg": "2.0"}
    assert s.override("other") == PackageOverride()


def test_the_cache_key_hashes_the_mapping_the_config_wrote(tmp_path):
    """Key order, and keys given empty, are kept: the cache key and the rule's params (whose
    repr Snakemake compares) are those of the config's own mapping."""
    written = {"variants": [], "version": "1.0", "env": {"B": "2", "A": "1"},
               "recipe_steps": [["true"]]}
    s = unit_settings(tmp_path, "native", overrides={"demo": written})
    identity = BuildIdentity.of(s, "demo", "1.0", "demo-1.0.tar.gz", "ab" * 32)
    assert repr(identity.params()["override"]) == repr(written)
    old = json.dumps({
        "sdist": "ab" * 32, "python": s.target.python, "platform": s.target.platform_tag,
        "variants": {k: repr(v) for k, v in s.variants.items()},
        "binary_build_deps": s.binary_build_deps, "override": written,
    }, sort_keys=True)
    assert identity.digest() == hashlib.sha256(old.encode()).hexdigest()[:16]
    assert PackageOverride(version="1.0", variants=("a",)).to_json() == {
        "version": "1.0", "variants": ["a"]}


def test_the_schema_lists_the_same_keys():
    schema = yaml.safe_load(
        (workflow_dir() / "config" / "schemas" / "config.schema.yaml").read_text())
    entry = schema["properties"]["overrides"]["additionalProperties"]
    assert entry["additionalProperties"] is False
    assert list(entry["properties"]) == list(overrides.KEYS)


def test_the_shipped_cross_defaults_are_valid_and_a_bad_one_is_named(tmp_path, monkeypatch):
    pillow = cross_overrides()["pillow"]
    assert pillow.target_libraries == ("zlib", "libjpeg-turbo")
    bad = tmp_path / "cross_overrides.yaml"
    bad.write_text("overrides:\n  Pillow:\n    target_library: [zlib]\n")
    monkeypatch.setattr(overrides, "CROSS_OVERRIDES", bad)
    with pytest.raises(ConfigError, match=rf"^{bad}: overrides\.Pillow: unknown key "
                                          r"'target_library' \(known: "):
        cross_overrides()


def test_refinery_run_refuses_a_bad_cross_default_in_one_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "cross_overrides.yaml"
    bad.write_text("overrides:\n  pillow:\n    sytem_packages: [libjpeg-dev]\n")
    monkeypatch.setattr(overrides, "CROSS_OVERRIDES", bad)
    for d in ("in", "out", "cache"):
        (tmp_path / d).mkdir()
    code = cli.main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache"), "--builder", "cross",
                     "--platform-tag", "manylinux2014_s390x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (f"refinery: error: {bad}: overrides.pillow: unknown key 'sytem_packages' "
                       f"(known: {', '.join(overrides.KEYS)})")


def test_refinery_run_refuses_an_unknown_key_of_the_users_config(tmp_path, capsys):
    config = tmp_path / "refinery.yaml"
    config.write_text("overrides:\n  numpy:\n    enviroment: {CFLAGS: -O1}\n")
    for d in ("in", "out", "cache"):
        (tmp_path / d).mkdir()
    code = cli.main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache"), "--config", str(config)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "overrides/numpy" in err[0] and "'enviroment'" in err[0]


def test_the_retry_worker_checks_the_entries_it_lays_over():
    request = RetryRequest("broken", recipe_steps=[["touch", "x"]])
    base = {"overrides": {"Broken": {"env": {"A": "1"}}}}
    assert overrides_for(base, [request]) == {
        "Broken": {"env": {"A": "1"}, "recipe_steps": [["touch", "x"]]}}
    with pytest.raises(ConfigError, match=r"^config with retry request \w+: "
                                          r"overrides\.Broken: unknown key 'enviroment'"):
        overrides_for({"overrides": {"Broken": {"enviroment": {}}}}, [request])
