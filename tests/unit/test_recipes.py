import os

import pytest

from refinery_lib.errors import ConfigError
from refinery_lib.recipes import Recipe, RecipePolicy, apply_on_host, install_command


def _recipe(tmp_path):
    return Recipe(steps=(("touch", str(tmp_path / "ran")),))


@pytest.mark.parametrize("policy,reason", [
    (RecipePolicy(enabled=False, allow_system=True), "--no-system-recipes"),
    (RecipePolicy(allow_system=True, dry_run=True), "dry run"),
    (RecipePolicy(), "--allow-system-recipes"),
])
def test_recipes_that_must_not_run(tmp_path, policy, reason):
    log = tmp_path / "log"
    record = apply_on_host(_recipe(tmp_path), policy, log, tmp_path, dict(os.environ))
    assert not (tmp_path / "ran").exists()
    assert record["applied"] is False and reason in record["skipped"]
    assert "touch" in log.read_text() and reason in log.read_text()


def test_recipe_runs_when_allowed(tmp_path):
    log = tmp_path / "log"
    record = apply_on_host(_recipe(tmp_path), RecipePolicy(allow_system=True), log, tmp_path,
                           dict(os.environ))
    assert (tmp_path / "ran").exists() and record["applied"] is True


def test_install_commands_are_argument_lists():
    assert install_command("dnf", ("openssl-devel",)) == ["dnf", "install", "-y", "openssl-devel"]
    assert install_command("apt", ("libssl-dev",))[-1] == "libssl-dev"


@pytest.mark.parametrize("bad", ["-o APT::x", "pkg; rm -rf /", "$(id)", ""])
def test_unsafe_package_names_refused(bad):
    with pytest.raises(ConfigError):
        Recipe(system_packages=(bad,))


def test_steps_must_be_argument_lists():
    with pytest.raises(ConfigError):
        Recipe(steps=((),))


def test_merge_dedups():
    a = Recipe(("x",), (("a",),))
    b = Recipe(("x", "y"), (("a",), ("b",)), source="hints")
    m = a.merged(b)
    assert m.system_packages == ("x", "y") and m.steps == (("a",), ("b",))
