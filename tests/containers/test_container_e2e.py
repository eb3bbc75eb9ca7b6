"""Real emulated s390x builds: podman + qemu-user + the Debian bookworm builder image.

Three builds of tiny C extensions from `tests/fixtures/projects.py`:
- `cfast` uses no versioned glibc symbol, so even on bookworm (glibc 2.36) auditwheel shows it
  satisfies manylinux2014 (glibc 2.17): the requested tag is honest and kept;
- `cnew` calls arc4random (GLIBC_2.36): asked for manylinux2014 it must fail, naming the
  symbol version and the base that would meet it; asked for manylinux_2_36 it succeeds.
"""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from refinery_lib.container_attempt import build_in_container
from refinery_lib.container_presets import PolicyNotMetError
from tests.conftest import build_tools_wheels
from tests.fixtures.projects import build_sdist, write_project

pytestmark = pytest.mark.slow

ARC4RANDOM = "#include <stdlib.h>\nunsigned int cnew_entropy(void) { return arc4random(); }\n"


@pytest.fixture(scope="module")
def sdists(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("container-sdists")
    return {
        "cfast": build_sdist(write_project(root / "p", "cfast", "1.0"), root / "a"),
        "cnew": build_sdist(write_project(root / "p", "cnew", "1.0", extra_include=ARC4RANDOM),
                            root / "b"),
    }


@pytest.fixture(scope="module")
def offline_links(tmp_path_factory) -> Path:
    """setuptools as a wheel: what an isolated build needs with --network none."""
    links = tmp_path_factory.mktemp("links")
    for wheel in build_tools_wheels():
        (links / wheel.name).write_bytes(wheel.read_bytes())
    return links


def build(sdist: Path, tmp_path: Path, image: str, tag: str, **kw):
    args = dict(
        engine="podman", image=image, preset="debian", arch="s390x",
        target_platform_tag=tag, python_tag="cp311", cpu="1.5", memory="1536m",
        log_path=tmp_path / "logs" / "attempt1.log", timeout=1800,
    )
    args.update(kw)
    return build_in_container(sdist, tmp_path / "work", **args)


def so_headers(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n)[:20] for n in zf.namelist() if re.search(r"\.so(\.|$)", n)}


def test_too_recent_glibc_symbol_cannot_claim_manylinux2014(debian_s390x_image, sdists,
                                                            tmp_path):
    with pytest.raises(PolicyNotMetError) as info:
        build(sdists["cnew"], tmp_path, debian_s390x_image, "manylinux2014_s390x")
    err = info.value
    message = str(err)
    assert err.requested == "manylinux2014_s390x"
    assert err.achieved == "manylinux_2_36_s390x"
    assert err.blockers == {"libc.so.6": ["GLIBC_2.36"]}
    assert err.symbols == {"GLIBC_2.36": ["arc4random"]}
    assert "GLIBC_2.36 (arc4random)" in message
    assert "needs glibc <= 2.17" in message
    assert "quay.io/pypa/manylinux2014_s390x" in message  # the base that would meet it
    assert "debian glibc 2.36 -> manylinux_2_36" in message
    assert not list((tmp_path / "work" / "out").glob("*.whl"))  # nothing lands
    log = err.log_path.read_text()
    assert "auditwheel show" in log and "too-recent versioned symbols" in log


def test_emulated_build_yields_a_real_s390x_wheel(debian_s390x_image, sdists, offline_links,
                                                  tmp_path):
    started = time.monotonic()
    res = build(sdists["cnew"], tmp_path, debian_s390x_image, "manylinux_2_36_s390x",
                network=False, find_links=[offline_links], env={"PIP_NO_INDEX": "1"})
    elapsed = time.monotonic() - started
    print(f"emulated s390x build of cnew: {elapsed:.1f} s, stages {res.timings}")

    # the shared object is an S/390 ELF: 64-bit, big-endian, e_machine 22
    headers = so_headers(res.wheel)
    assert headers, "no extension module in the wheel"
    for name, head in headers.items():
        assert head[:4] == b"\x7fELF", name
        assert head[4] == 2 and head[5] == 2, f"{name}: not 64-bit big-endian"
        assert int.from_bytes(head[18:20], "big") == 22, f"{name}: not EM_S390"

    # the tag is a real s390x manylinux tag, the one auditwheel show reports
    _, _, _, tags = parse_wheel_filename(res.wheel.name)
    platforms = {t.platform for t in tags}
    assert platforms == {"manylinux_2_36_s390x"}
    assert {t.interpreter for t in tags} == {"cp311"}
    assert res.auditwheel_tag == "manylinux_2_36_s390x"
    assert '"manylinux_2_36_s390x"' in res.auditwheel_show

    # the smoke import ran on s390x, inside the builder
    assert res.smoke["ok"] and res.smoke["arch"] == "s390x"
    assert res.smoke["modules"] == {"cnew": "ok"}

    # the limits reached the engine and the container really ran under them
    log = res.log_path.read_text()
    engine_line = next(ln for ln in log.splitlines() if ln.startswith("$ podman run"))
    assert "--cpus 1.5 --memory 1536m" in engine_line
    assert "--runtime runc" in engine_line and "--network none" in engine_line
    assert "--ulimit nofile=1024:20000 --ulimit nproc=4096:4096" in engine_line
    assert res.limits["cpus"] == 1.5
    assert res.limits["memory_bytes"] == 1536 * 1024 * 1024
    assert res.limits["nofile"] == [1024, 20000]


def test_plain_extension_honestly_meets_manylinux2014(debian_s390x_image, sdists, tmp_path):
    """No versioned glibc symbols: auditwheel shows manylinux_2_17, so manylinux2014 is honest.

    Network on: setuptools comes from the index through the mounted host CA bundle.
    """
    res = build(sdists["cfast"], tmp_path, debian_s390x_image, "manylinux2014_s390x",
                env={"PIP_INDEX_URL": "https://pypi.org/simple"})
    _, _, _, tags = parse_wheel_filename(res.wheel.name)
    assert {t.platform for t in tags} == {"manylinux2014_s390x", "manylinux_2_17_s390x"}
    assert res.auditwheel_tag == "manylinux_2_17_s390x"
    assert res.smoke["ok"] and res.smoke["arch"] == "s390x"
    assert res.grafted_libs == ()
    # only the work dir was writable
    log = res.log_path.read_text()
    volumes = re.findall(r"--volume (\S+)", log)
    assert [v for v in volumes if v.endswith(":rw")] == [f"{tmp_path / 'work'}:/work:rw"]


def test_system_package_recipe_and_grafted_library(debian_s390x_image, tmp_path):
    """A library from a system package (apt-get inside the builder) is grafted into the wheel.

    no-isolation variant: the image's own setuptools builds it; network on for apt.
    """
    bz = "#include <bzlib.h>\nconst char *cbz_version(void) { return BZ2_bzlibVersion(); }\n"
    root = tmp_path / "src"
    sdist = build_sdist(write_project(root / "p", "cbz", "1.0", extra_include=bz), root / "d")
    res = build(
        sdist, tmp_path, debian_s390x_image, "manylinux_2_36_s390x", variant="no-isolation",
        system_packages=["libbz2-dev"], recipe_steps=[["touch", "RECIPE_RAN"]],
        env={"LDFLAGS": "-Wl,--no-as-needed -lbz2"},
    )
    assert (tmp_path / "work" / "src" / "cbz-1.0" / "RECIPE_RAN").exists()
    assert len(res.grafted_libs) == 1 and res.grafted_libs[0].startswith("cbz.libs/libbz2")
    headers = so_headers(res.wheel)
    assert len(headers) == 2  # the extension and the grafted libbz2, both S/390
    assert all(int.from_bytes(h[18:20], "big") == 22 for h in headers.values())
    assert res.smoke["ok"] and res.smoke["arch"] == "s390x"
    # auditwheel found it eligible for more than asked: every tag it wrote is one it shows
    platforms = {t.platform for t in parse_wheel_filename(res.wheel.name)[3]}
    assert "manylinux_2_36_s390x" in platforms
    assert res.auditwheel_tag in platforms
