"""Planner against a real file:// PEP 503 index of fabricated wheels and real sdists."""

import json
from pathlib import Path

import pytest

from refinery_lib.files import read_json
from refinery_lib.index import SimpleIndex
from refinery_lib.models import Action, Plan, PlanNode
from refinery_lib.plan import Planner, PlanSettings
from refinery_lib.targets import Target
from refinery_lib.wheels import scan_wheel
from tests.fixtures.projects import build_sdist, make_wheel, write_project, write_simple_index

S390 = "cp311-cp311-manylinux2014_s390x"
X86 = "cp311-cp311-manylinux2014_x86_64"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> SimpleIndex:
    root = tmp_path_factory.mktemp("idx")
    files = root / "files"
    proj = root / "proj"
    for name, version, reqs in [
        ("cfast", "1.0", ()),
        ("cfast", "1.1", ()),
        ("cfast", "2.0", ()),
        ("lvl1", "1.0", ("lvl2",)),
        ("lvl2", "1.0", ("lvl3",)),
        ("lvl3", "1.0", ()),
        ("foo-bar", "3.0", ()),
    ]:
        build_sdist(write_project(proj, name, version, requires=reqs), files)
    make_wheel(files, "purehelper", "2.0", "py3-none-any", ("x86only; platform_machine=='x86_64'",))
    make_wheel(files, "purehelper", "2.1rc1", "py3-none-any")
    make_wheel(files, "s390wheel", "1.0", S390)
    make_wheel(files, "s390wheel", "1.0", X86)
    make_wheel(files, "socksy", "1.0", "py3-none-any")
    write_simple_index(files, root / "simple")
    return SimpleIndex((root / "simple").as_uri())


def plan(tmp_path, index, wheels, **kw):
    inp = tmp_path / "in"
    recs = [scan_wheel(make_wheel(inp, *w)) for w in wheels]
    target = Target("3.11", kw.pop("platform", "manylinux2014_s390x"))
    planner = Planner(target, PlanSettings(**kw), index, tmp_path / "dl")
    return {(n.name, n.version): n for n in planner.plan(recs)}


def by_name(nodes):
    return {name: n for (name, _), n in nodes.items()}


def test_reuse_fetch_build(tmp_path, index):
    nodes = by_name(
        plan(
            tmp_path,
            index,
            [
                ("pure-one", "1.0", "py3-none-any"),
                ("abi", "1.0", "cp39-abi3-manylinux2014_s390x"),
                ("s390wheel", "1.0", X86),
                ("cfast", "1.0", X86),
            ],
        )
    )
    assert nodes["pure-one"].action is Action.REUSE
    assert nodes["abi"].action is Action.REUSE
    assert nodes["s390wheel"].action is Action.FETCH
    assert nodes["s390wheel"].source["filename"].endswith("manylinux2014_s390x.whl")
    assert nodes["cfast"].action is Action.BUILD
    assert nodes["cfast"].source["filename"] == "cfast-1.0.tar.gz"


def test_no_binary_forces_build_or_missing(tmp_path, index):
    nodes = by_name(plan(tmp_path, index, [("s390wheel", "1.0", X86)], no_binary=(":all:",)))
    # no sdist of s390wheel on the index: nothing to build from
    assert nodes["s390wheel"].action is Action.MISSING
    assert "no sdist" in nodes["s390wheel"].detail


def test_pinned_and_eager(tmp_path, index):
    wheels = [("cfast", "1.0", X86), ("user", "1.0", "py3-none-any", ("cfast<2",))]
    assert by_name(plan(tmp_path, index, wheels))["cfast"].version == "1.0"
    eager = by_name(plan(tmp_path, index, wheels, upgrade_strategy="eager"))["cfast"]
    assert eager.version == "1.1" and eager.action is Action.BUILD


def test_fallback_latest_when_pinned_version_absent(tmp_path, index):
    wheels = [("cfast", "0.9", X86), ("user", "1.0", "py3-none-any", ("cfast<2",))]
    assert by_name(plan(tmp_path, index, wheels))["cfast"].action is Action.MISSING
    node = by_name(plan(tmp_path, index, wheels, fallback_latest=True))["cfast"]
    assert (node.version, node.fallback_from, node.action) == ("1.1", "0.9", Action.BUILD)
    assert "fallback-latest" in node.detail


@pytest.mark.parametrize(
    "depth,expected",
    [
        (0, {"lvl1": Action.MISSING}),
        (1, {"lvl1": Action.BUILD, "lvl2": Action.MISSING}),
        (2, {"lvl1": Action.BUILD, "lvl2": Action.BUILD, "lvl3": Action.MISSING}),
        (3, {"lvl1": Action.BUILD, "lvl2": Action.BUILD, "lvl3": Action.BUILD}),
    ],
)
def test_expansion_depth(tmp_path, index, depth, expected):
    nodes = by_name(
        plan(tmp_path, index, [("root", "1.0", "py3-none-any", ("lvl1",))], expansion_depth=depth)
    )
    assert {k: nodes[k].action for k in expected} == expected
    missing = [n for n in nodes.values() if n.action is Action.MISSING]
    assert all("beyond the expansion depth" in n.detail for n in missing)
    if depth >= 2:
        assert nodes["lvl1"].build_deps == (nodes["lvl2"].key,)


def test_markers_evaluated_for_target(tmp_path, index):
    nodes = by_name(
        plan(
            tmp_path,
            index,
            [
                (
                    "root",
                    "1.0",
                    "py3-none-any",
                    (
                        "purehelper>=2",
                        "winonly; sys_platform == 'win32'",
                        "oldpy; python_version < '3.8'",
                        "socksy; extra == 'socks'",
                    ),
                ),
            ],
        )
    )
    assert nodes["purehelper"].action is Action.FETCH
    assert nodes["purehelper"].version == "2.0"  # the pre-release is not chosen
    # purehelper's x86-only dependency is not needed on s390x
    assert not {"winonly", "oldpy", "socksy", "x86only"} & set(nodes)


def test_extras_only_when_asked(tmp_path, index):
    nodes = by_name(
        plan(
            tmp_path,
            index,
            [("root", "1.0", "py3-none-any", ("socksy; extra == 'socks'",))],
            extras={"root": ("socks",)},
        )
    )
    assert nodes["socksy"].action is Action.FETCH


def test_native_target_evaluates_host_markers(tmp_path, index):
    nodes = by_name(
        plan(
            tmp_path,
            index,
            [("root", "1.0", "py3-none-any", ("purehelper==2.0",))],
            platform="native",
        )
    )
    assert "x86only" in nodes if Target("3.11", "native").arch == "x86_64" else True


def test_missing_names_requirement_and_dependent(tmp_path, index):
    nodes = by_name(plan(tmp_path, index, [("root", "1.0", "py3-none-any", ("ghost>=1",))]))
    ghost = nodes["ghost"]
    assert ghost.action is Action.MISSING
    assert ghost.requirement == "ghost>=1" and ghost.needed_by == ("root==1.0",)
    assert "no such project" in ghost.detail


def test_input_wheel_satisfies_dependency_by_normalised_name(tmp_path, index):
    nodes = plan(
        tmp_path,
        index,
        [
            ("root", "1.0", "py3-none-any", ("Foo_Bar>=3",)),
            ("foo.bar", "3.0", "py3-none-any"),
        ],
    )
    assert [k for k in nodes if k[0] == "foo-bar"] == [("foo-bar", "3.0")]
    assert nodes[("foo-bar", "3.0")].action is Action.REUSE
    assert nodes[("foo-bar", "3.0")].needed_by == ("root==1.0",)


def test_conflict_is_reported(tmp_path, index):
    nodes = plan(
        tmp_path,
        index,
        [
            ("root", "1.0", "py3-none-any", ("cfast>=2",)),
            ("cfast", "1.0", "py3-none-any"),
        ],
    )
    conflict = [n for n in nodes.values() if n.action is Action.MISSING]
    assert len(conflict) == 1 and "conflict" in conflict[0].detail


def test_skip_known_failures(tmp_path, index):
    inp = tmp_path / "in"
    recs = [scan_wheel(make_wheel(inp, "cfast", "1.0", X86))]
    calls = []

    def last_status(name, version):
        calls.append((name, version))
        return "failed"

    planner = Planner(
        Target("3.11", "manylinux2014_s390x"),
        PlanSettings(skip_known_failures=True),
        index,
        tmp_path / "dl",
        last_status,
    )
    (node,) = planner.plan(recs)
    assert node.action is Action.SKIP and calls == [("cfast", "1.0")]


def test_downloads_are_cached(tmp_path, index):
    plan(tmp_path, index, [("root", "1.0", "py3-none-any", ("lvl1",))])
    dl = Path(tmp_path / "dl")
    first = {p.name: p.stat().st_mtime_ns for p in dl.iterdir()}
    plan(tmp_path, index, [("root", "1.0", "py3-none-any", ("lvl1",))])
    assert {p.name: p.stat().st_mtime_ns for p in dl.iterdir()} == first


def test_requeued_build_dependency_is_build_only(tmp_path, index):
    """A build requirement the requeue found (`extra_requires`) is planned and ordered before its
    parent, but it is an output package only if the input or a runtime dependency asks for it."""
    wheels = [
        ("cfast", "1.0", X86),  # built from its sdist: the parent of the requeued names
        ("user", "1.0", "py3-none-any", ("purehelper>=2",)),
    ]
    nodes = by_name(
        plan(
            tmp_path,
            index,
            wheels,
            expansion_depth=3,
            extra_requires={"cfast": ("lvl1", "purehelper")},
        )
    )
    assert nodes["cfast"].action is Action.BUILD and not nodes["cfast"].build_only
    # lvl1 only builds cfast; lvl2 and lvl3 are its runtime dependencies: build-only as well
    for name in ("lvl1", "lvl2", "lvl3"):
        assert nodes[name].action is Action.BUILD and nodes[name].build_only, name
    assert nodes["lvl1"].needed_by == ("cfast==1.0",)
    assert nodes["lvl1"].key in nodes["cfast"].build_deps
    # purehelper is requeued too, but `user` needs it at runtime: an output package
    assert nodes["purehelper"].action is Action.FETCH and not nodes["purehelper"].build_only
    assert nodes["cfast"].fetch_deps
    assert not nodes["user"].build_only
    # plan.json round trip; a plan written before the field existed still loads
    data = nodes["lvl2"].to_json()
    assert data["build_only"] is True and PlanNode.from_json(data) == nodes["lvl2"]
    del data["build_only"]
    assert PlanNode.from_json(data).build_only is False


def test_build_only_reaches_missing_and_conflicting_requirements(tmp_path, index):
    nodes = plan(
        tmp_path,
        index,
        [("cfast", "1.0", X86), ("lvl3", "1.0", "py3-none-any")],
        expansion_depth=1,
        extra_requires={"cfast": ("lvl1", "lvl3>=5")},
    )
    named = by_name(nodes)
    assert named["lvl1"].action is Action.BUILD and named["lvl1"].build_only
    # beyond the expansion depth: missing, and only for a build, so no output package
    assert named["lvl2"].action is Action.MISSING and named["lvl2"].build_only
    assert "beyond the expansion depth" in named["lvl2"].detail
    # lvl3 is an input: an output package, although cfast's build needs it too
    assert nodes[("lvl3", "1.0")].action is Action.REUSE
    assert not nodes[("lvl3", "1.0")].build_only
    # the requeued lvl3>=5 conflicts with the input's 1.0: reported, but build-only
    (conflict,) = [n for n in nodes.values() if "conflict" in n.detail]
    assert conflict.action is Action.MISSING and conflict.build_only


def test_requeued_name_that_is_a_runtime_dependency_stays_output(tmp_path, index):
    wheels = [("cfast", "1.0", X86), ("root", "1.0", "py3-none-any", ("lvl1",))]
    nodes = by_name(
        plan(tmp_path, index, wheels, expansion_depth=3, extra_requires={"cfast": ("lvl1",)})
    )
    assert not any(n.build_only for n in nodes.values())
    assert set(nodes["lvl1"].needed_by) == {"cfast==1.0", "root==1.0"}
    assert nodes["lvl1"].key in nodes["cfast"].build_deps


def test_an_unreachable_index_is_said_and_the_plan_is_made_again(tmp_path, monkeypatch):
    import socket

    from refinery_lib import index as index_mod
    from refinery_lib.files import read_json
    from refinery_lib.steps import forget_unreachable_plan, plan_workflow
    from refinery_lib.wheels import scan_folder
    from tests.fixtures.config import unit_settings

    monkeypatch.setattr(index_mod, "RETRY_WAIT_INITIAL", 0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here: connection refused
    url = f"http://127.0.0.1:{port}/simple"
    settings = unit_settings(tmp_path, index={"url": url})
    make_wheel(settings.paths.input, "cfast", "1.0", S390.replace("s390x", "aarch64"))
    inventory = tmp_path / "inventory.json"
    from refinery_lib.files import write_json

    write_json(inventory, {"wheels": [r.to_json() for r in scan_folder(settings.paths.input)]})
    plan_path = tmp_path / "plan.json"
    (node,) = plan_workflow(settings, inventory, plan_path).nodes()
    assert node.action is Action.MISSING
    assert node.detail.startswith(f"index-unreachable: cannot reach {url}/cfast/")
    assert "on the index" not in node.detail
    assert read_json(plan_path)["index_unreachable"]
    assert Plan.from_file(plan_path).index_unreachable
    message = forget_unreachable_plan(plan_path)
    assert message and "planning again" in message and not plan_path.exists()
    assert forget_unreachable_plan(plan_path) is None  # nothing to forget


def test_sdists_in_the_wheelhouse_are_build_sources(tmp_path, index):
    """`pip download` leaves sdists beside wheels: each is its package's source, and one
    without a wheel beside it is planned as a build; the index is not asked."""
    from refinery_lib.wheels import scan_folder

    inp = tmp_path / "in"
    proj = tmp_path / "proj"
    build_sdist(write_project(proj, "localonly", "0.3", requires=("cfast>=1.0",)), inp)
    build_sdist(write_project(proj, "withwheel", "2.0"), inp)
    make_wheel(inp, "withwheel", "2.0", X86)
    records = scan_folder(inp)
    assert all(r.valid for r in records), records
    assert sorted(r.kind for r in records) == ["sdist", "sdist", "wheel"]
    planner = Planner(Target("3.11", "manylinux2014_s390x"), PlanSettings(), index, tmp_path / "dl")
    nodes = {n.name: n for n in planner.plan(records)}
    for name in ("localonly", "withwheel"):
        node = nodes[name]
        assert node.action is Action.BUILD, node.detail
        assert node.source["input_path"].startswith(str(inp))
        assert "build from the input's sdist" in node.detail
    assert nodes["localonly"].detail.startswith("an sdist without a wheel in the input")
    # its requirements come from PKG-INFO and are planned like a wheel's
    assert nodes["cfast"].action is Action.BUILD and nodes["cfast"].needed_by


def test_a_bad_sdist_in_the_wheelhouse_is_invalid_with_its_reason(tmp_path):
    from refinery_lib.wheels import scan_wheel

    inp = tmp_path / "in"
    sdist = build_sdist(write_project(tmp_path / "p", "realname", "1.0"), inp)
    renamed = sdist.rename(inp / "othername-1.0.tar.gz")
    rec = scan_wheel(renamed)
    assert not rec.valid and "misnamed" in rec.reason and rec.kind == "sdist"
    junk = inp / "junk-1.0.tar.gz"
    junk.write_bytes(b"not a tar")
    assert "damaged" in scan_wheel(junk).reason
    notes = inp / "notes.txt"
    notes.write_text("x")
    assert "neither .whl nor .tar.gz nor .zip" in scan_wheel(notes).reason


def _written_plan(tmp_path, index):
    """plan.json as the plan step writes it: an input to reuse, one to fetch, one to build
    (with a dependency to build), a missing requirement and an invalid input file."""
    from refinery_lib.steps import plan_workflow, scan_input
    from tests.fixtures.config import unit_settings

    settings = unit_settings(tmp_path, index={"url": index.url})
    inp = settings.paths.input
    make_wheel(inp, "pure-one", "1.0", "py3-none-any", ("ghost>=9",))
    make_wheel(inp, "s390wheel", "1.0", X86)
    make_wheel(inp, "lvl1", "1.0", X86, ("lvl2",))
    (inp / "notes.txt").write_text("not a wheel")
    scan_input(settings, settings.paths.inventory)
    return settings, plan_workflow(settings, settings.paths.inventory, settings.paths.plan)


def test_the_plan_file_reads_back_as_the_planner_wrote_it(tmp_path, index):
    """Plan.from_file is the one reader of plan.json: what the plan step wrote, typed."""
    settings, made = _written_plan(tmp_path, index)
    plan = Plan.from_file(settings.paths.plan)
    assert plan == made
    assert (plan.python, plan.platform_tag) == ("3.11", "manylinux2014_s390x")
    assert json.loads(json.dumps(plan.to_json())) == read_json(settings.paths.plan)
    by_name = {n.name: n for n in plan.nodes()}
    assert {n.name for n in plan.nodes(Action.REUSE)} == {"pure-one"}
    assert {n.name for n in plan.nodes(Action.FETCH)} == {"s390wheel"}
    assert [n.name for n in plan.nodes(Action.BUILD)] == [
        n.name for n in plan.nodes() if n.action is Action.BUILD
    ]
    assert {"lvl1", "lvl2", "lvl3"} <= {n.name for n in plan.nodes(Action.BUILD)}
    assert plan.nodes(Action.SKIP) == ()
    assert by_name["ghost"].action is Action.MISSING
    lvl1 = by_name["lvl1"]
    assert plan.node(lvl1.key) == lvl1 and by_name["lvl2"].key in lvl1.build_deps
    assert plan.find("lvl1", "1.0") == lvl1 and plan.find("lvl1", "9.9") is None
    (invalid,) = plan.invalid
    assert invalid.file == "notes.txt" and "neither .whl" in invalid.reason
    statuses = sorted(e["status"] for e in plan.events)
    assert statuses == ["invalid", "missing"]
    assert plan.index_unreachable == ()


def test_a_key_the_plan_does_not_have_is_an_error(tmp_path, index):
    from refinery_lib.errors import RefineryError

    settings, _ = _written_plan(tmp_path, index)
    with pytest.raises(RefineryError, match="nothere-1.0 is not in the plan"):
        Plan.from_file(settings.paths.plan).node("nothere-1.0")


def test_what_is_no_plan_is_a_value_error(tmp_path):
    """A half-written plan, or another JSON document: ValueError, as readers expect of a
    damaged file (progress, forget_unreachable_plan); a missing one: OSError."""
    path = tmp_path / "plan.json"
    for text in ("{half a plan", '{"nodes": [{"name": "x"}]}', "[1, 2]", '{"other": 1}'):
        path.write_text(text)
        with pytest.raises(ValueError):
            Plan.from_file(path)
    with pytest.raises(OSError):
        Plan.from_file(tmp_path / "absent.json")


def test_a_plan_with_only_nodes_reads(tmp_path):
    """The least a reader needs: nodes with a name, version, action and key."""
    from refinery_lib.files import write_json

    node = {"name": "a", "version": "1", "action": "build", "key": "a-1"}
    write_json(tmp_path / "plan.json", {"nodes": [node]})
    plan = Plan.from_file(tmp_path / "plan.json")
    assert plan.node("a-1") == PlanNode("a", "1", Action.BUILD, "a-1")
    assert plan.invalid == () and plan.events == () and plan.python == ""


def test_each_version_of_the_plan_file_is_read_once(tmp_path, index):
    """Input functions and in-process jobs ask for the plan per job: the same version of the
    file is the same Plan; a plan written again (a new file, as write_json makes) is read."""
    from refinery_lib.files import write_json

    settings, made = _written_plan(tmp_path, index)
    first = Plan.from_file(settings.paths.plan)
    assert Plan.from_file(str(settings.paths.plan)) == first
    assert Plan.from_file(settings.paths.plan) is first
    write_json(settings.paths.plan, {"nodes": [made.nodes()[0].to_json()]})
    again = Plan.from_file(settings.paths.plan)
    assert again is not first and again.nodes() == made.nodes()[:1]
