"""One source of truth (issue #15): each table and helper below is defined once, and every
place that needs it uses that one. The sources are read as text and with `ast`, never
imported, so a copy anywhere in the code fails here."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from refinery_lib import container_build, container_presets, container_run, platform_tags, targets
from refinery_lib.failure_lines import head_and_tail, last_lines

ROOT = Path(__file__).resolve().parents[2]
#: the code that runs: the package, the panel, the workflow's scripts and rules, the benches
CODE = ("refinery_lib", "web", "scripts", "rules", "bench", "Snakefile")


def code_files(suffixes=(".py", ".smk", "")) -> list[Path]:
    files: list[Path] = []
    for name in CODE:
        path = ROOT / name
        if path.is_file() and path.suffix in suffixes:
            files.append(path)
        elif path.is_dir():
            files += [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in suffixes
                      and "__pycache__" not in p.parts]
    return files


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def holders(pattern: str, suffixes=(".py", ".smk", "")) -> set[str]:
    """The code files whose text matches `pattern`."""
    regex = re.compile(pattern)
    return {rel(p) for p in code_files(suffixes) if regex.search(p.read_text(errors="replace"))}


def test_flock_is_taken_in_one_module():
    """files.lock_file / files.exclusive are the refinery's one lock between processes."""
    found = holders(r"\bfcntl\b")
    assert found == {"refinery_lib/files.py"}


def test_the_run_id_format_is_defined_once():
    found = holders(r"%Y%m%dT%H%M%S|\buuid4\(\)\.hex\[:6\]")
    assert found == {"refinery_lib/run_id.py"}


@functools.cache
def _nodes(path: Path) -> list[ast.AST]:
    return list(ast.walk(ast.parse(path.read_text(), filename=str(path))))


def _dict_keys(path: Path) -> list[set[str]]:
    """The string keys of every dict literal of a Python file."""
    return [{k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            for node in _nodes(path) if isinstance(node, ast.Dict)]


def _tables_with(keys: set[str]) -> set[str]:
    return {rel(p) for p in code_files((".py",)) if any(keys & d for d in _dict_keys(p))}


def test_the_manylinux_alias_table_is_defined_once():
    assert _tables_with(set(platform_tags.MANYLINUX_ALIASES)) == {"refinery_lib/platform_tags.py"}
    # nor spelt out in a pattern: the legacy names appear as strings in that module only
    # (documentation and examples name manylinux2014, so only the two others are looked for)
    assert holders(r"manylinux1|manylinux2010", (".py", ".smk")) == {
        "refinery_lib/platform_tags.py"}


def test_the_machine_name_map_is_defined_once():
    assert _tables_with({"amd64", "arm64", "ppc64el"}) == {"refinery_lib/platform_tags.py"}
    found = holders(r"platform\.machine\(\)\.lower\(\)|\.get\(platform\.machine\(\)")
    assert found == set()


def test_the_known_architectures_are_listed_once():
    arches = set(platform_tags.KNOWN_ARCHES)
    tuples = set()
    for path in code_files((".py",)):
        for node in _nodes(path):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(values & arches) >= 4:
                    tuples.add(rel(path))
    assert tuples == {"refinery_lib/platform_tags.py"}


ALIASED = [f"{alias}_{arch}" for alias in platform_tags.MANYLINUX_ALIASES
           for arch in ("x86_64", "i686", "s390x", "aarch64", "ppc64le")]


@pytest.mark.parametrize("tag", ALIASED + ["manylinux_2_28_s390x", "musllinux_1_2_aarch64",
                                           "linux_s390x"])
def test_every_caller_reads_a_tag_the_same(tag):
    family, glibc, arch = platform_tags.split_platform(tag)
    expected = glibc if family == "manylinux" else None
    assert targets.Target("3.11", tag).glibc == expected
    assert targets.Target("3.11", tag).arch == arch
    assert platform_tags.glibc_of(tag) == expected
    assert container_build.split_platform(tag) == (family, glibc, arch)
    if expected is not None:
        assert "glibc <= {}.{}".format(*expected) in container_presets.policy_suggestion(tag, arch)
    if tag in ALIASED:
        assert glibc == platform_tags.MANYLINUX_ALIASES[tag.split("_")[0]]


def test_every_caller_names_the_host_the_same(monkeypatch):
    from bench import synth

    monkeypatch.setattr(platform_tags._platform, "machine", lambda: "AMD64")
    assert targets.host_arch() == synth.host_arch() == platform_tags.host_arch() == "x86_64"
    assert container_presets.deb_arch(platform_tags.host_arch()) == "amd64"
    assert platform_tags.machine("arm64") == platform_tags.machine("aarch64") == "aarch64"
    assert container_presets.oci_arch("ppc64el") == "ppc64le"


def test_the_container_gets_the_shared_module():
    """container_build.py imports platform_tags beside it: every container run mounts both."""
    assert container_run.TAGS_SCRIPT.is_file()
    assert Path(container_run.C_TAGS).parent == Path(container_run.C_SCRIPT).parent
    assert container_run.TAGS_SCRIPT.name == Path(container_run.C_TAGS).name


def test_last_lines_of_a_failed_commands_output():
    out = "Collecting x\n\n  ERROR: one\n   \nERROR: two\n"
    assert last_lines(out) == "ERROR: two"
    assert last_lines(out, 2) == "ERROR: one ERROR: two"
    assert last_lines(out, 3, 10) == "Collecting"
    assert last_lines("") == last_lines(" \n") == ""
    # nothing else in the package picks the last lines of an output itself (container_build
    # runs in a container without the refinery: its own one-line picks are its own)
    found = holders(r"for (\w+) in [\w.()]+\.splitlines\(\) if \1\.strip\(\)\]", (".py",))
    assert found - {"refinery_lib/container_build.py"} == {"refinery_lib/failure_lines.py"}


def test_head_and_tail(tmp_path):
    import io

    small = b"a\nb\n"
    assert head_and_tail(io.BytesIO(small), 4) == (small, b"")
    big = b"".join(b"line %d\n" % i for i in range(100))
    head, tail = head_and_tail(io.BytesIO(big), 20)
    assert big.startswith(head) and big.endswith(tail)
    assert head.endswith(b"\n") and tail.startswith(b"line") and len(head + tail) <= 40


def test_run_ids():
    from refinery_lib import run_id

    plain, worker = run_id.new_run_id(), run_id.new_run_id("worker")
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", plain)
    assert re.fullmatch(r"worker-\d{8}T\d{6}-[0-9a-f]{6}", worker)
    assert run_id.current_run_id({run_id.RUN_ID_ENV: "given"}) == "given"
    assert run_id.current_run_id({}) != run_id.current_run_id({})
    assert run_id.stamp(0) == "19700101T000000"


def test_settings_take_their_defaults_from_config_yaml(tmp_path):
    """config/config.yaml is the one table of defaults: Settings.from_config repeats none of
    them (no `.get(key, default)`), and an empty config reads as config.yaml does."""
    from refinery_lib.config import defaults
    from refinery_lib.settings import Settings

    source = (ROOT / "refinery_lib" / "settings.py").read_text()
    tree = ast.parse(source)
    method = next(n for n in ast.walk(tree)
                  if isinstance(n, ast.FunctionDef) and n.name == "from_config")
    with_default = [ast.get_source_segment(source, n) for n in ast.walk(method)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                    and n.func.attr == "get" and len(n.args) > 1]
    assert with_default == []
    assert Settings.from_config({}, tmp_path) == Settings.from_config(defaults(), tmp_path)


def _results_tree() -> dict[str, str]:
    """The WorkflowFiles table: entry name -> its path relative to RESULTS."""
    from refinery_lib.settings import WorkflowFiles

    files = WorkflowFiles(Path("."))
    tree = {}
    for name, entry in vars(WorkflowFiles).items():
        if hasattr(entry, "relative"):
            value = getattr(files, name)
            tree[name] = (value("{key}") if callable(value) else value).as_posix()
    return tree


def test_the_workflows_files_are_named_once():
    """Each file of the workflow under RESULTS (the plan, the records, outcomes, benchmarks,
    failure records, the missing-dependencies record, the aggregation's mark) is named in
    settings.WorkflowFiles alone: the rules, the steps, the aggregation, the progress display
    and the CLI ask it (`settings.paths.plan`, `RESULTS.outcome("{key}")`) and spell none,
    nor join a name onto the results folder themselves."""
    tree = _results_tree()
    assert tree["plan"] == "plan/plan.json" and tree["outcome"] == "outcomes/{key}.json"
    names = {r.rsplit("/", 1)[-1] for r in tree.values() if "{key}" not in r and "." in r}
    per_key = {r.split("/", 1)[0] for r in tree.values() if "{key}" in r}
    assert {"plan.json", "inventory.json", "reused.json", "fetched.json", "complete.json"} <= names
    assert {"outcomes", "sdists", "benchmarks", "failures"} <= per_key
    spelled = "|".join(re.escape(n) for n in sorted(names))
    folder = "|".join(sorted(per_key))
    # a file name in a string; a per-package folder as a path segment of a string
    # ("outcomes/...", ".../outcomes"); a name joined onto the results folder
    pattern = (rf"[\"'][^\"'\n]*\b(?:{spelled})[\"']"
               rf"|[\"'/](?:{folder})/|/(?:{folder})[\"']"
               r"|results\)?\s*/\s*f?[\"']|\{RESULTS\}/")
    assert holders(pattern) == {"refinery_lib/settings.py"}
