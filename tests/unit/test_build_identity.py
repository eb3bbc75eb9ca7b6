"""One build identity (issue #15): the wheel cache's key and the build rule's params are made
from the same `BuildIdentity`, so a setting that changes a build changes both."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from refinery_lib.build import BuildIdentity, build_digest
from refinery_lib.models import Action, PlanNode
from refinery_lib.overrides import PackageOverride
from refinery_lib.workflow import build_params
from tests.fixtures.config import unit_settings

NODE = PlanNode("demo", "1.0", Action.BUILD, "demo-1.0",
                source={"filename": "demo-1.0.tar.gz", "sha256": "ab" * 32})
SHA = "ab" * 32


def both(settings) -> tuple[str, dict]:
    """(the cache key, the rule's params) of NODE under `settings`."""
    return build_digest(NODE, settings, SHA), build_params(NODE, settings)


def test_the_key_of_a_local_build_is_the_one_it_always_was(tmp_path):
    """Cached wheels of local builds stay valid: the fields added to the key (builder,
    image, variant order) are hashed only when not at their defaults."""
    s = unit_settings(tmp_path, "native")
    assert str(s.builder) == "local"
    old = json.dumps({
        "sdist": SHA,
        "python": s.target.python,
        "platform": s.target.platform_tag,
        "variants": {k: repr(v) for k, v in s.variants.items()},
        "binary_build_deps": s.binary_build_deps,
        "override": {},
    }, sort_keys=True)
    assert build_digest(NODE, s, SHA) == hashlib.sha256(old.encode()).hexdigest()[:16]


@pytest.mark.parametrize("change", [
    {"builder": {"kind": "cross"}},
    {"builder": {"kind": "container", "preset": "rocky"}},
    {"build": {"binary_build_deps": False}},
    {"build": {"variants": {"isolated": {}, "plain": {"isolation": False}}}},
    {"overrides": {"demo": {"config_settings": ["x=1"]}}},
    {"target": {"python": "3.12", "platform_tag": "manylinux2014_s390x"}},
    {"target": {"python": "3.11", "platform_tag": "manylinux_2_28_s390x"}},
], ids=["cross", "container", "binary_build_deps", "variants", "override", "python",
        "platform"])
def test_a_change_of_build_settings_changes_key_and_params(tmp_path, change):
    base = unit_settings(tmp_path, builder={"kind": "local"})
    changed = unit_settings(tmp_path, **{"builder": {"kind": "local"}, **change})
    key, params = both(base)
    new_key, new_params = both(changed)
    assert new_key != key
    assert new_params != params


def test_the_builders_image_changes_key_and_params(tmp_path):
    rocky = unit_settings(tmp_path, builder={"kind": "container", "preset": "rocky"})
    fedora = unit_settings(tmp_path, builder={"kind": "container", "preset": "fedora"})
    assert both(rocky)[0] != both(fedora)[0]
    assert both(rocky)[1] != both(fedora)[1]


def test_the_variant_order_changes_key_and_params(tmp_path):
    variants = {"isolated": {}, "plain": {"isolation": False}}
    listed = unit_settings(tmp_path, build={"variants": variants})
    reordered = unit_settings(tmp_path, build={"variants": variants,
                                               "variant_order": ["plain", "isolated"]})
    assert both(listed)[0] != both(reordered)[0]
    assert both(listed)[1] != both(reordered)[1]


def test_settings_that_do_not_change_the_wheel_change_neither(tmp_path):
    base = unit_settings(tmp_path, builder={"kind": "local"})
    other = unit_settings(tmp_path, builder={"kind": "local"},
                          build={"max_attempts": 7, "attempt_timeout": 10},
                          strategy={"fallback_latest": True})
    assert both(base) == both(other)


def test_params_are_every_field_and_the_key_every_field_but_the_node(tmp_path):
    """Each field of the identity reaches the params; each one but the node's name, version
    and sdist file name (in the record's name, or stood for by the sdist's sha256) the key."""
    ident = BuildIdentity.of(unit_settings(tmp_path, "native"), "demo", "1.0",
                             "demo-1.0.tar.gz", SHA)
    assert set(ident.params()) == {f.name for f in dataclasses.fields(BuildIdentity)}
    other = {
        "name": "other", "version": "2.0", "sdist": "demo-1.0.zip", "sdist_sha256": "cd" * 32,
        "python": "3.12", "platform": "manylinux_2_28_s390x", "builder": "cross",
        "image": "debian", "variants": (("isolated", "Variant(name='isolated')"),),
        "variant_order": ("no-isolation",), "binary_build_deps": not ident.binary_build_deps,
        "override": PackageOverride(version="0.9"),
    }
    assert set(other) == set(ident.params())
    for name, value in other.items():
        changed = dataclasses.replace(ident, **{name: value})
        assert changed.params() != ident.params(), name
        if name in ("name", "version", "sdist"):
            assert changed.digest() == ident.digest(), name
        else:
            assert changed.digest() != ident.digest(), name


def test_the_rule_and_the_cache_see_the_same_identity(tmp_path):
    s = unit_settings(tmp_path)
    ident = BuildIdentity.of(s, "demo", "1.0", "demo-1.0.tar.gz", SHA)
    assert build_params(NODE, s) == ident.params()
    assert build_digest(NODE, s, SHA) == ident.digest()
    assert ident.builder == "cross" and ident.image == "debian"
