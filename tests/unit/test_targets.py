import pytest

from refinery_lib.errors import ConfigError
from refinery_lib.targets import Target, host_arch

S390 = Target("3.11", "manylinux2014_s390x")


@pytest.mark.parametrize(
    "tag,ok",
    [
        ("cp311-cp311-manylinux_2_17_s390x", True),
        ("cp311-cp311-manylinux2014_s390x", True),
        ("cp39-abi3-manylinux2014_s390x", True),
        ("cp311-none-manylinux2014_s390x", True),
        ("py3-none-any", True),
        ("py311-none-any", True),
        ("cp311-cp311-manylinux_2_28_s390x", False),
        ("cp311-cp311-manylinux_2_39_s390x", False),
        ("cp311-cp311-musllinux_1_1_s390x", False),
        ("cp311-cp311-linux_s390x", False),
        ("py2-none-any", False),
        ("cp311-cp311-manylinux2014_x86_64", False),
        ("cp312-cp312-manylinux2014_s390x", False),
        ("cp312-abi3-manylinux2014_s390x", False),
    ],
)
def test_manylinux2014_s390x_tag_set(tag, ok):
    assert S390.accepts([tag]) is ok


@pytest.mark.parametrize(
    ("python", "platform_tag", "tag", "ok"),
    [
        # a newer policy accepts older ones
        ("3.11", "manylinux_2_28_s390x", "cp311-cp311-manylinux_2_17_s390x", True),
        ("3.11", "manylinux_2_28_s390x", "cp311-cp311-manylinux_2_28_s390x", True),
        ("3.11", "manylinux_2_28_s390x", "cp311-cp311-manylinux_2_31_s390x", False),
        # x86's legacy aliases
        ("3.11", "manylinux2014_x86_64", "cp311-cp311-manylinux1_x86_64", True),
        ("3.11", "manylinux2014_x86_64", "cp311-cp311-manylinux2010_x86_64", True),
        ("3.12", "musllinux_1_2_s390x", "cp312-cp312-musllinux_1_1_s390x", True),
        ("3.12", "musllinux_1_2_s390x", "cp312-cp312-manylinux2014_s390x", False),
    ],
)
def test_other_targets_tag_sets(python, platform_tag, tag, ok):
    assert Target(python, platform_tag).accepts([tag]) is ok


def test_linux_target_is_its_own_platform():
    assert Target("3.11", "linux_s390x").platforms == ("linux_s390x",)


def test_native_is_the_host():
    t = Target("3.11", "native")
    assert t.arch == host_arch()
    assert t.accepts([f"cp311-cp311-linux_{host_arch()}"])


def test_marker_environment_is_the_target():
    env = S390.marker_environment()
    assert env["platform_machine"] == "s390x"
    assert env["python_version"] == "3.11" and env["sys_platform"] == "linux"


def test_pip_args():
    args = S390.pip_target_args()
    assert args[:4] == ["--python-version", "3.11", "--implementation", "cp"]
    assert "manylinux2014_s390x" in args and "manylinux_2_17_s390x" in args


@pytest.mark.parametrize("python,plat", [("3", "native"), ("3.11", "win32_s390x"), ("x", "native")])
def test_bad_targets(python, plat):
    with pytest.raises(ConfigError):
        Target(python, plat)
