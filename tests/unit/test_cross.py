"""Cross builder parts: zig targets from platform tags, backend cross settings, the target
Python read from an exported image, builder resolution."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from refinery_lib.cross import backends, sysroot
from refinery_lib.cross.toolchain import toolchain, zig_target
from refinery_lib.errors import BuildError, ConfigError
from refinery_lib.pep517.build_in_env import config_settings
from refinery_lib.settings import BuilderKind, Settings, resolve_builder
from refinery_lib.targets import Target, host_arch

FOREIGN = "s390x" if host_arch() != "s390x" else "x86_64"


@pytest.mark.parametrize(
    ("tag", "zig", "glibc"),
    [
        ("manylinux2014_s390x", "s390x-linux-gnu.2.17", (2, 17)),
        ("manylinux_2_28_s390x", "s390x-linux-gnu.2.28", (2, 28)),
        ("manylinux_2_31_aarch64", "aarch64-linux-gnu.2.31", (2, 31)),
        ("manylinux2014_ppc64le", "powerpc64le-linux-gnu.2.17", (2, 17)),
        ("musllinux_1_2_s390x", "s390x-linux-musl", None),
        ("linux_s390x", "s390x-linux-gnu", None),
    ],
)
def test_zig_target_takes_the_glibc_floor_from_the_platform_tag(tag, zig, glibc):
    target = Target("3.11", tag)
    assert target.glibc == glibc
    assert zig_target(target) == zig


def test_auto_builder_is_local_for_the_host_container_for_an_image_else_cross():
    host = Target("3.11", f"manylinux_2_28_{host_arch()}")
    foreign = Target("3.11", f"manylinux2014_{FOREIGN}")
    assert resolve_builder("auto", Target("3.11", "native"), False) is BuilderKind.LOCAL
    assert resolve_builder("auto", Target("3.11", "native"), True) is BuilderKind.LOCAL
    assert resolve_builder("auto", host, False) is BuilderKind.LOCAL
    assert resolve_builder("auto", host, True) is BuilderKind.CONTAINER
    assert resolve_builder("auto", foreign, True) is BuilderKind.CONTAINER
    assert resolve_builder("auto", foreign, False) is BuilderKind.CROSS
    assert resolve_builder("local", foreign, False) is BuilderKind.LOCAL


def test_cross_settings_take_the_debian_image_for_the_target_python(tmp_path):
    conf = {"target": {"platform_tag": f"manylinux2014_{FOREIGN}"}, "cache": str(tmp_path)}
    settings = Settings.from_config(conf, tmp_path)
    assert settings.builder is BuilderKind.CROSS
    assert settings.container is not None and settings.container.preset == "debian"
    with pytest.raises(ConfigError, match="native"):
        Settings.from_config({"target": {"platform_tag": "native"},
                              "builder": {"kind": "cross"}}, tmp_path)


def _target_python(tmp_path: Path) -> sysroot.TargetPython:
    root = tmp_path / "tree"
    return sysroot.TargetPython(
        version="3.11", root=root, include=tmp_path / "include",
        sysconfig_dir=tmp_path / "sysconfig", sysconfig_name="_sysconfigdata__s390x-linux-gnu",
        multiarch="s390x-linux-gnu", ext_suffix=".cpython-311-s390x-linux-gnu.so",
        machine="s390x", image="img", image_id="0" * 64, libview=tmp_path / "libview",
    )


def _toolchain(tmp_path: Path):
    return toolchain(Target("3.11", "manylinux2014_s390x"), tmp_path / "cross")


def test_meson_cross_file_names_zig_qemu_big_endian_and_the_target_headers(tmp_path):
    tp = _target_python(tmp_path)
    cb = backends.cross_build(_toolchain(tmp_path), tp, tmp_path / "attempt" / "cross", "mesonpy",
                              prefix_maps=("-ffile-prefix-map=/w=/usr/src/build",))
    text = cb.cross_file.read_text()
    assert "cpu_family = 's390x'" in text and "endian = 'big'" in text
    assert "needs_exe_wrapper = true" in text  # a boolean: a string breaks meson
    assert "'-ffile-prefix-map=/w=/usr/src/build'" in text
    assert f"-I{tmp_path / 'include' / 'python3.11'}" in text
    assert str(tmp_path / "cross" / "toolchain-s390x-linux-gnu.2.17" / "bin" / "cc") in text
    assert cb.config_settings == (f"setup-args=--cross-file={cb.cross_file}",
                                  f"build-dir={tmp_path / 'attempt' / 'meson-build'}")
    assert cb.env["_PYTHON_HOST_PLATFORM"] == "linux-s390x"
    assert cb.env["_PYTHON_SYSCONFIGDATA_NAME"] == "_sysconfigdata__s390x-linux-gnu"
    assert cb.env["CARGO_BUILD_TARGET"] == "s390x-unknown-linux-gnu"
    assert cb.pythonpath == str(tmp_path / "sysconfig")


def test_cmake_toolchain_file_for_scikit_build_core(tmp_path):
    tp = _target_python(tmp_path)
    cb = backends.cross_build(_toolchain(tmp_path), tp, tmp_path / "a", "scikit_build_core.build")
    text = cb.toolchain_file.read_text()
    assert "set(CMAKE_SYSTEM_PROCESSOR \"s390x\")" in text
    assert "CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY" in text
    assert 'set(Python_SOABI "cpython-311-s390x-linux-gnu")' in text
    assert cb.config_settings == (f"cmake.define.CMAKE_TOOLCHAIN_FILE={cb.toolchain_file}",)
    setuptools = backends.cross_build(_toolchain(tmp_path), tp, tmp_path / "b",
                                      "setuptools.build_meta")
    assert setuptools.config_settings == ()
    assert setuptools.env["LDSHARED"].endswith("/cc -shared")


def test_zig_wrapper_compiles_c_for_the_target_arch(tmp_path):
    tc = _toolchain(tmp_path)
    src = tmp_path / "x.c"
    src.write_text("int twice(int x) { return 2 * x; }\n")
    out = tmp_path / "x.o"
    subprocess.run([tc.cc, "-c", "-O2", src, "-o", out], check=True, env={"PATH": "/usr/bin:/bin",
                   **tc.env()})
    data = out.read_bytes()
    assert data[:4] == b"\x7fELF" and data[5] == 2  # big-endian
    assert int.from_bytes(data[18:20], "big") == 22  # EM_S390


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, data in members:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def test_export_keeps_build_files_rewrites_absolute_links_and_drops_escapes(tmp_path):
    def file(name, data=b"x"):
        return tarfile.TarInfo(name), data

    def link(name, target):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return info, b""

    archive = tmp_path / "export.tar"
    archive.write_bytes(_tar([
        file("usr/include/python3.11/Python.h"),
        file("usr/share/doc/readme"),
        file("etc/shadow"),
        link("usr/lib/s390x-linux-gnu/libz.so", "/usr/lib/s390x-linux-gnu/libz.so.1"),
        file("usr/lib/s390x-linux-gnu/libz.so.1"),
        link("usr/lib/evil", "../../../../etc/passwd"),
    ]))
    dest = tmp_path / "tree"
    dest.mkdir()
    sysroot._extract(archive, dest)
    assert (dest / "usr/include/python3.11/Python.h").is_file()
    assert not (dest / "usr/share").exists() and not (dest / "etc").exists()
    libz = dest / "usr/lib/s390x-linux-gnu/libz.so"
    assert libz.is_symlink() and libz.resolve() == (dest / "usr/lib/s390x-linux-gnu/libz.so.1")
    assert not (dest / "usr/lib/evil").exists()


def test_target_python_is_read_from_the_sysconfig_data_without_running_it(tmp_path):
    tree = tmp_path / "t" / "tree"
    (tree / "usr/lib/python3.11").mkdir(parents=True)
    (tree / "usr/include/python3.11").mkdir(parents=True)
    (tree / "usr/include/python3.11/Python.h").write_text("")
    (tree / "usr/include/s390x-linux-gnu/python3.11").mkdir(parents=True)
    (tree / "usr/include/s390x-linux-gnu/python3.11/pyconfig.h").write_text("#define X 1\n")
    (tree / "usr/lib/python3.11/_sysconfigdata__s390x-linux-gnu.py").write_text(
        "import os\nos.system('false')\nbuild_time_vars = {'VERSION': '3.11', "
        "'MULTIARCH': 's390x-linux-gnu', 'EXT_SUFFIX': '.cpython-311-s390x-linux-gnu.so'}\n")
    tp = sysroot._describe(tmp_path / "t", "img", "abc")
    assert (tp.version, tp.machine, tp.multiarch) == ("3.11", "s390x", "s390x-linux-gnu")
    assert tp.sysconfig_name == "_sysconfigdata__s390x-linux-gnu"
    assert (tp.include / "s390x-linux-gnu/python3.11/pyconfig.h").is_file()
    assert [p.name for p in tp.sysconfig_dir.iterdir()] == [
        "_sysconfigdata__s390x-linux-gnu.py"]
    (tree / "usr/lib/python3.11/_sysconfigdata__s390x-linux-gnu.py").write_text(
        "build_time_vars = dict(VERSION=__import__('os').getcwd())\n")
    with pytest.raises(BuildError, match="cannot read"):
        sysroot._describe(tmp_path / "t", "img", "abc")


def test_config_settings_as_build_makes_them():
    assert config_settings(["a=1", "b=x=y", "a=2"]) == {"a": ["1", "2"], "b": "x=y"}


def test_library_view_shows_target_library_headers_but_not_the_target_libc(tmp_path):
    tree = tmp_path / "tree"
    for rel in ("usr/include/stdio.h", "usr/include/zlib.h",
                "usr/include/s390x-linux-gnu/bits/types.h",
                "usr/include/s390x-linux-gnu/jconfig.h", "usr/lib/s390x-linux-gnu/libz.so.1"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    info = tree / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info / "libc6-dev:s390x.list").write_text(
        "/.\n/usr/include/stdio.h\n/usr/include/s390x-linux-gnu/bits/types.h\n")
    (info / "zlib1g-dev:s390x.list").write_text("/usr/include/zlib.h\n")
    view = sysroot._library_view(tree, tmp_path / "view")
    inc = view / "usr" / "include"
    assert (inc / "zlib.h").read_text() == "usr/include/zlib.h"
    assert (inc / "s390x-linux-gnu/jconfig.h").is_file()
    assert not (inc / "stdio.h").exists() and not (inc / "s390x-linux-gnu/bits").exists()
    assert (view / "usr/lib/s390x-linux-gnu/libz.so.1").is_file()


def test_wrappers_read_host_system_folders_as_the_targets(tmp_path):
    """-I/usr/include would put this host's libc headers before zig's: the wrapper maps it to
    the target's library view, -L/usr/lib/... to the target's root, drops /usr/local."""
    view, root = tmp_path / "my view", tmp_path / "root"
    (view / "usr/include").mkdir(parents=True)
    (view / "usr/include/onlytarget.h").write_text("#define ONLY_TARGET 7\n")
    (root / "usr/lib/s390x-linux-gnu").mkdir(parents=True)
    tc = toolchain(Target("3.11", "manylinux2014_s390x"), tmp_path / "cross", view, root, "k")
    src = tmp_path / "x.c"
    src.write_text("#include <stdio.h>\n#include <onlytarget.h>\n"
                   "int f(void) { return ONLY_TARGET + (int)sizeof(FILE); }\n")
    cmd = [tc.cc, "-O2", "-I/usr/include", "-I/usr/local/include",
           "-L/usr/lib/s390x-linux-gnu", "-c", src, "-o", tmp_path / "x.o"]
    subprocess.run(cmd, check=True, env={"PATH": "/usr/bin:/bin", **tc.env()})
    assert (tmp_path / "x.o").read_bytes()[18:20] == (22).to_bytes(2, "big")
    text = tc.cc.read_text()
    assert "view='" in text and "exec " in text


def test_cross_builds_get_the_shipped_package_settings_unless_the_user_has_their_own(tmp_path):
    conf = {"target": {"platform_tag": f"manylinux2014_{FOREIGN}"}}
    shipped = Settings.from_config(conf, tmp_path).overrides["pillow"]
    assert shipped.target_libraries == ("zlib", "libjpeg-turbo")
    assert "xcb=disable" in shipped.config_settings
    mine = Settings.from_config({**conf, "overrides": {"Pillow": {"env": {"A": "1"}}}},
                                tmp_path).overrides["pillow"]
    assert mine.to_json() == {"env": {"A": "1"}}
    native = Settings.from_config({"target": {"platform_tag": "native"}}, tmp_path)
    assert "pillow" not in native.overrides


def test_provenance_names_the_builder_zig_and_the_target_glibc():
    from refinery_lib.models import Outcome, Status
    from refinery_lib.provenance import provenance

    meta = {"builder": "cross", "zig": "0.17.1", "zig_target": "s390x-linux-gnu.2.17",
            "target_glibc": "2.17", "auditwheel_tag": "manylinux_2_17_s390x",
            "target_libraries": ["zlib 1.2.13"], "smoke": {"ok": True}}
    record = provenance(Outcome("x", "1", Status.BUILT, wheel="x.whl", metadata=meta), None, {})
    assert {k: record["build"][k] for k in ("builder", "zig", "target_glibc",
                                            "target_libraries")} == {
        "builder": "cross", "zig": "0.17.1", "target_glibc": "2.17",
        "target_libraries": ["zlib 1.2.13"]}
