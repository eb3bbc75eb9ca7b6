"""The hint catalog: its data, and hints found in real captured build logs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from refinery_lib import hint_catalog
from refinery_lib import hints as hints_mod
from refinery_lib.hint_catalog import CATEGORIES, CatalogError, catalog_as_json, load_catalog
from refinery_lib.hints import Hint, match_log, python_deps_from_hints, recipe_from_hints

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"

# Real logs (tests/fixtures/logs/README.md says how each was captured):
# log -> [(hint id, text on the line the hint names)], in line order; nothing else may match.
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "missing-header": [("missing-header", "fatal error: refinery_missing.h: No such file")],
    "gcc-absent": [("gcc-missing", "error: [Errno 2] No such file or directory: 'gcc'")],
    "gxx-absent": [("gxx-missing", "error: [Errno 2] No such file or directory: 'g++'")],
    "meson-no-cc": [("gcc-missing", "ERROR: Unknown compiler(s): [['cc'], ['gcc']")],
    "scipy-nofortran": [("gfortran-missing", "ERROR: Unknown compiler(s): [['gfortran']")],
    # the advice (what a build goes without) is in the log too; failures leave it out
    "numpy-noblas": [("built-without-blas", "openblas found: NO"),
                     ("openblas", "No BLAS library detected!")],
    "numpy-header": [("numpy-headers", "fatal error: numpy/arrayobject.h: No such file")],
    "numpy-distutils": [("numpy-distutils", "/numpy/distutils/")],
    "pybind11-header": [("pybind11", "fatal error: pybind11/pybind11.h: No such file")],
    "torch-header": [("torch-headers", "fatal error: torch/extension.h: No such file")],
    "arrow-header": [("arrow", "fatal error: arrow/api.h: No such file")],
    "psycopg2": [("libpq", "Error: pg_config executable not found.")],
    "mysqlclient-2.1": [("mysql-client", "/bin/sh: 1: mysql_config: not found")],
    "mysqlclient-2.2": [("mysql-client", "Exception: Can not find valid pkg-config name.")],
    "python-ldap": [("openldap", "fatal error: lber.h: No such file or directory")],
    "gssapi": [("krb5-gssapi", "/bin/sh: 1: krb5-config: not found")],
    "kerberos": [("krb5-gssapi", "krb5-config: not found")],
    "pycurl": [("libcurl", "No such file or directory: 'curl-config'")],
    "lxml": [
        ("libxml2", "Please make sure the libxml2 and libxslt development packages"),
        ("libxslt", "Please make sure the libxml2 and libxslt development packages"),
    ],
    "h5py": [("hdf5", "Unable to load dependency HDF5")],
    "python-snappy": [("snappy", "fatal error: snappy-c.h: No such file")],
    "systemd-python": [("systemd", "Cannot find libsystemd or libsystemd-journal")],
    "dbus-python": [("dbus", 'ERROR: Dependency "dbus-1" not found')],
    "pycairo": [("cairo", 'ERROR: Dependency "cairo" not found')],
    "pygobject": [("cairo", 'ERROR: Dependency "cairo" not found')],
    "pycairo-no-pkgconfig": [("pkg-config-missing", "Did not find pkg-config by name")],
    "pyodbc": [("unixodbc", "fatal error: sql.h: No such file")],
    "gmpy2": [("mpfr-mpc", "fatal error: mpfr.h: No such file")],
    "pyaudio": [("portaudio", "fatal error: portaudio.h: No such file")],
    "m2crypto": [("swig-missing", "error: command 'swig' failed: No such file or directory")],
    "dlib-no-cmake": [("cmake-missing", "CMake is not installed on your system!")],
    "cmake-too-old": [("cmake-too-old", "CMake 9.1 or higher is required.")],
    "cmake-policy-removed": [("cmake-policy-removed", "Compatibility with CMake < 3.5 has")],
    "cryptography-norust": [("rust-missing", "error: can't find Rust compiler")],
    "rpds-py-nocargo": [
        ("rust-missing", "Rust not found, installing into a temporary directory"),
        ("prebuilt-download-blocked", "Downloading rustup-init from"),
    ],
    "rpds-py-offline": [("crates-io-unreachable", "Could not resolve host: index.crates.io")],
    "rust-too-old": [("rust-too-old", "refinery-rust-too-old@0.1.0 requires rustc 1.99")],
    "build-dep-missing": [("python-dep-not-found", "satisfies the requirement numpy==0.9.2")],
    "scikit-build-cmake-pin": [("python-dep-not-found", "the requirement cmake>=9.1")],
    "import-at-build": [("python-module-missing", "No module named 'Cython'")],
    "requires-python": [("requires-different-python", "requires a different Python")],
    "scm-no-version": [("setuptools-scm-no-version", "setuptools-scm was unable to detect")],
    "sasl": [("stale-cython-c-sources", "fatal error: longintrepr.h: No such file")],
    "s390x-immintrin": [("s390x-x86-simd-headers", "fatal error: immintrin.h: No such file")],
    "s390x-endian": [("s390x-little-endian-assumption", '#error "this code assumes a little')],
    "s390x-mavx2": [("s390x-x86-compiler-flags", "unrecognized command-line option ‘-mavx2’")],
    "s390x-msse": [("s390x-x86-compiler-flags", "unrecognized command-line option ‘-msse4.2’")],
    "s390x-m32": [("s390x-x86-compiler-flags", "unrecognized command-line option ‘-m32’")],
    "s390x-march": [("s390x-x86-compiler-flags", "unrecognized argument in option ‘-march=")],
    "s390x-ia32-builtin": [("s390x-x86-builtins", "implicit declaration of function ‘__builtin")],
    "s390x-x86-asm": [("s390x-x86-inline-asm", "Error: Unrecognized opcode: `pause'")],
    # cross builds on x86_64 for s390x with zig (README: "Cross-build logs")
    "cross-autoconf-run": [("cross-cannot-run-target", "cannot run test program while cross")],
    "cross-autoconf-detect": [("cross-cannot-run-target", "cannot run C compiled programs.")],
    "cross-meson-run": [("cross-cannot-run-target", "Can not run test applications in this")],
    "cross-meson-exe-wrapper": [("cross-cannot-run-target", "ERROR: An exe_wrapper is needed")],
    "cross-cmake-tryrun": [("cross-cannot-run-target", "try_run() invoked in cross-compiling")],
    "cross-cmake-gen-qemu": [("cross-exec-target-binary", "Could not open '/lib/ld64.so.1'")],
    "cross-cmake-gen-noexec": [("cross-exec-target-binary", "/build/gen: Exec format error")],
    "cross-helper-noexec": [("cross-exec-target-binary", "error: [Errno 8] Exec format error")],
    "cross-zig-library": [("cross-sysroot-library-missing", 'system library "jpeg" using')],
    "cross-zig-header": [("libjpeg", "fatal error: 'jpeglib.h' file not found")],
    "cross-meson-fortran": [("fortran-cross-compiler-missing", "'fortran' compiler binary not")],
    "rust-cross-target": [("rust-target-missing", "can't find crate for `std`")],
    "rust-cross-core": [("rust-target-missing", "can't find crate for `core`")],
    "maturin-cross-target": [("rust-target-missing", "can't find crate for `std`")],
    "maturin-cross-no-zig": [("maturin-zig-missing", "Caused by: Failed to find zig")],
    # successful builds: nothing to hint
    "psycopg2-ok": [],
    "header-probe-ok": [],
}

# the messages named in the brief of the catalog, each with the entry that must explain it
BRIEF_LINES = [
    ("error: command 'gcc' failed: No such file or directory", "gcc-missing"),
    ("error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory", "gcc-missing"),
    ("unable to execute 'gcc': No such file or directory", "gcc-missing"),
    ("configure: error: C compiler cannot create executables", "c-compiler-broken"),
    (
        "../meson.build:1:0: ERROR: Unknown compiler(s): [['c++'], ['g++'], ['clang++']]",
        "gxx-missing",
    ),
    ("Package glib-2.0 was not found in the pkg-config search path.", "glib"),
    ("Package cairo was not found in the pkg-config search path.", "cairo"),
    ("src/x.c:2:10: fatal error: H5public.h: No such file or directory", "hdf5"),
    ("/bin/sh: 1: mariadb_config: not found", "mysql-client"),
    ("src/x.c:2:10: fatal error: sasl/sasl.h: No such file or directory", "cyrus-sasl"),
    ("src/x.c:2:10: fatal error: libxml/xmlversion.h: No such file or directory", "libxml2"),
    ("/bin/sh: 1: xml2-config: not found", "libxml2"),
    ("error: can't find Rust compiler", "rust-missing"),
    ("/bin/sh: 1: cargo: not found", "rust-missing"),
    (
        "error: package `foo v1.0.0` cannot be built because it requires rustc 1.70 or newer, "
        "while the currently active rustc version is 1.65.0",
        "rust-too-old",
    ),
    ("error: No Fortran compiler found", "gfortran-missing"),
    ("Could not find a Fortran compiler", "gfortran-missing"),
    ("src/m.c:3:10: fatal error: numpy/arrayobject.h: No such file or directory", "numpy-headers"),
    ("    ArrowConfig.cmake", "arrow"),
    ("/bin/sh: 1: protoc: not found", "protobuf"),
    ("src/x.c:1:10: fatal error: immintrin.h: No such file or directory", "s390x-x86-simd-headers"),
    ("src/x.c:1:10: fatal error: emmintrin.h: No such file or directory", "s390x-x86-simd-headers"),
    ("#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__", "s390x-little-endian-assumption"),
    ("gcc: error: unrecognized command-line option '-m64'", "s390x-x86-compiler-flags"),
    ("gcc: error: unrecognized command-line option ‘-mavx’", "s390x-x86-compiler-flags"),
    ("ERROR: No matching distribution found for pythran<0.15", "python-dep-not-found"),
    ("ModuleNotFoundError: No module named 'numpy'", "python-module-missing"),
    ("src/x.c:2:10: fatal error: Python.h: No such file or directory", "python-headers"),
    ("src/x.c:2:10: fatal error: openssl/ssl.h: No such file or directory", "openssl"),
]


def _log_lines(path: Path) -> list[str]:
    return [
        raw.decode("utf-8", errors="replace").rstrip("\r") for raw in path.read_bytes().split(b"\n")
    ]


# ------------------------------------------------------------------ the catalog as data


def test_catalog_has_at_least_80_valid_unique_entries():
    catalog = load_catalog()
    assert len(catalog) >= 80
    ids = [e.id for e in catalog]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids)
    assert {e.category for e in catalog} == CATEGORIES
    for entry in catalog:
        assert entry.patterns and entry.note
        assert len(entry.regexes) == len(entry.patterns)
        for pattern in entry.patterns:
            re.compile(pattern)
        for step in entry.steps:
            assert step and all(isinstance(a, str) and a for a in step)


def test_system_packages_named_for_both_families():
    for entry in load_catalog():
        # arrow's apt package comes from the Apache Arrow repository, the rest from the distro
        assert bool(entry.dnf) == bool(entry.apt), entry.id
        for name in (*entry.dnf, *entry.apt):
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+_-]*", name), (entry.id, name)


def test_catalog_covers_the_brief():
    ids = {e.id for e in load_catalog()}
    wanted = {
        "gcc-missing",
        "gxx-missing",
        "gfortran-missing",
        "c-compiler-broken",
        "python-headers",
        "libffi",
        "openssl",
        "zlib",
        "bzip2",
        "lzma",
        "sqlite3",
        "uuid",
        "libcurl",
        "libxml2",
        "libxslt",
        "libjpeg",
        "libpng",
        "libtiff",
        "freetype",
        "libwebp",
        "libyaml",
        "hdf5",
        "libpq",
        "mysql-client",
        "krb5-gssapi",
        "openldap",
        "cyrus-sasl",
        "snappy",
        "lz4",
        "zstd",
        "gmp",
        "readline",
        "ncurses",
        "libevent",
        "systemd",
        "dbus",
        "cairo",
        "glib",
        "cmake-missing",
        "cmake-too-old",
        "ninja-missing",
        "meson-missing",
        "pkg-config-missing",
        "swig-missing",
        "autoconf-missing",
        "automake-missing",
        "libtool-missing",
        "make-missing",
        "rust-missing",
        "rust-too-old",
        "crates-io-unreachable",
        "openblas",
        "lapack",
        "blis",
        "numpy-headers",
        "pybind11",
        "arrow",
        "protobuf",
        "torch-headers",
        "s390x-little-endian-assumption",
        "s390x-x86-simd-headers",
        "s390x-x86-compiler-flags",
        "python-dep-not-found",
        "python-module-missing",
    }
    assert wanted <= ids


@pytest.mark.parametrize("entry", load_catalog(), ids=lambda e: e.id)
def test_every_entry_matches_its_examples_and_only_them(entry):
    assert entry.examples, f"{entry.id} has no example line"
    for line in entry.examples:
        assert [h.id for h in match_log(line + "\n")] == [entry.id], line


@pytest.mark.parametrize(("line", "hint_id"), BRIEF_LINES)
def test_messages_from_the_brief(line, hint_id):
    assert hint_id in [h.id for h in match_log(f"noise before\n{line}\nnoise after\n")]


def test_catalog_as_json_serves_every_entry():
    data = catalog_as_json()
    assert len(data) == len(load_catalog())
    json.dumps(data)
    first = data[0]
    for key in ("id", "category", "patterns", "dnf", "apt", "steps", "note", "examples"):
        assert key in first


# ------------------------------------------------------------------ real captured logs


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_log_yields_the_right_hints_at_the_right_lines(name):
    path = LOGS / f"{name}.log"
    lines = _log_lines(path)
    found = match_log(path)
    assert [h.id for h in found] == [hint_id for hint_id, _ in EXPECTED[name]]
    for hint, (_, text) in zip(found, EXPECTED[name], strict=True):
        file_line = lines[hint.line_no - 1]
        assert text in file_line
        assert hint.line == file_line.strip()
        # the hint names the first line of the log that its entry matches
        entry = next(e for e in load_catalog() if e.id == hint.id)
        assert not any(
            any(rx.search(earlier) for rx in entry.regexes) for earlier in lines[: hint.line_no - 1]
        )
    assert found == match_log(path.read_text(encoding="utf-8", errors="replace"))


def test_every_captured_log_is_tested_and_small():
    on_disk = {p.stem for p in LOGS.glob("*.log")}
    assert on_disk == set(EXPECTED)
    assert all(p.stat().st_size < 200_000 for p in LOGS.glob("*.log"))


def test_hints_carry_packages_and_notes():
    (hint,) = match_log(LOGS / "psycopg2.log")
    assert hint.dnf == ("libpq-devel",) and hint.apt == ("libpq-dev",)
    assert hint.category == "headers" and "pg_config" in hint.note
    (hint,) = match_log(LOGS / "missing-header.log")
    assert hint.captures["header"] == "refinery_missing.h"
    assert "refinery_missing.h" in hint.note


def test_rust_too_old_gives_the_needed_version():
    (hint,) = match_log(LOGS / "rust-too-old.log")
    assert hint.captures["rust_version"] == "1.99"
    assert "1.99" in hint.note
    (old,) = match_log(BRIEF_LINES[14][0])
    assert old.id == "rust-too-old" and old.captures["rust_version"] == "1.70"
    (edition,) = match_log("  feature `edition2024` is required\n")
    assert edition.captures["rust_version"] == "1.85"


def test_cross_category_sends_only_cross_failures_to_the_container_builder():
    assert "cross" in CATEGORIES and {"rust", "fortran"} <= CATEGORIES
    cross = {e.id for e in load_catalog() if e.category == "cross"}
    assert {
        "cross-cannot-run-target",
        "cross-exec-target-binary",
        "cross-sysroot-library-missing",
    } <= cross
    log = (LOGS / "cross-cmake-gen-noexec.log").read_text()
    (hint,) = match_log(log)
    assert hint.category == "cross" and "Exec format error" in hint.line
    assert "container builder" in hint.note
    # toolchain gaps of the cross build fail with a named cause: not `cross`
    for name, hint_id, category in [
        ("rust-cross-target", "rust-target-missing", "rust"),
        ("maturin-cross-no-zig", "maturin-zig-missing", "rust"),
        ("cross-meson-fortran", "fortran-cross-compiler-missing", "fortran"),
    ]:
        (hint,) = match_log(LOGS / f"{name}.log")
        assert (hint.id, hint.category) == (hint_id, category)
    (rust,) = match_log(LOGS / "rust-cross-target.log")
    assert "rustup target add s390x-unknown-linux-gnu" in rust.note
    assert "maturin build --zig --target s390x-unknown-linux-gnu" in rust.note
    (fortran,) = match_log(LOGS / "cross-meson-fortran.log")
    assert "glibc 2.36" in fortran.note and "manylinux" in fortran.note


def test_cross_library_hint_names_the_library():
    (hint,) = match_log(LOGS / "cross-zig-library.log")
    assert hint.captures["lib"] == "jpeg" and "libjpeg" in hint.note
    assert not hint.dnf and not hint.apt  # the container attempt installs it, not this one


def test_clang_quoted_missing_headers_match_like_gcc_ones():
    # zig cc (clang) says: fatal error: 'zlib.h' file not found
    checked = 0
    for entry in load_catalog():
        for line in entry.examples:
            m = re.search(r"fatal error: ([^\s:]+): No such file or directory", line)
            if not m:
                continue
            clang = f"{line[: m.start()]}fatal error: '{m[1]}' file not found"
            assert [h.id for h in match_log(clang + "\n")] == [entry.id], clang
            checked += 1
    assert checked >= 50
    (hint,) = match_log(LOGS / "cross-zig-header.log")
    assert hint.id == "libjpeg" and hint.category == "headers"


def test_cmake_too_old_step_names_the_version():
    (hint,) = match_log(LOGS / "cmake-too-old.log")
    assert hint.captures["cmake_version"] == "9.1"
    assert ["python3", "-m", "pip", "install", "cmake>=9.1"] in [list(s) for s in hint.steps]


def test_no_error_log_yields_nothing():
    assert match_log(LOGS / "psycopg2-ok.log") == []
    assert match_log("") == []
    assert match_log("running build_ext\ncopying x -> y\n") == []


# ------------------------------------------------------------------ matching rules


def test_one_hint_per_entry_at_its_first_line_ordered_by_line():
    log = (
        "ok\n"
        "/bin/sh: 1: swig: not found\n"
        "src/a.c:1:10: fatal error: zstd.h: No such file or directory\n"
        "error: command 'swig' failed: No such file or directory\n"
    )
    found = match_log(log)
    assert [(h.id, h.line_no) for h in found] == [("swig-missing", 2), ("zstd", 3)]


def test_fallback_entry_only_where_no_specific_entry_matches():
    known = match_log("src/a.c:1:10: fatal error: zstd.h: No such file or directory\n")
    assert [h.id for h in known] == ["zstd"]
    unknown = match_log("src/a.c:1:10: fatal error: frob/frob.h: No such file or directory\n")
    assert [h.id for h in unknown] == ["missing-header"]
    assert unknown[0].captures["header"] == "frob/frob.h"
    both = match_log(
        "a.c:1:10: fatal error: zstd.h: No such file or directory\n"
        "b.c:1:10: fatal error: frob.h: No such file or directory\n"
    )
    assert [(h.id, h.line_no) for h in both] == [("zstd", 1), ("missing-header", 2)]


def test_colours_crlf_and_blocks_do_not_change_line_numbers(tmp_path, monkeypatch):
    coloured = "\x1b[1m\x1b[31merror\x1b[0m: failed to get `pyo3` as a dependency of package\r\n"
    path = tmp_path / "build.log"
    path.write_bytes(("line\r\n" * 5 + coloured + "x\n" * 3).encode())
    (hint,) = match_log(path)
    assert hint.id == "crates-io-unreachable" and hint.line_no == 6
    assert hint.line == "error: failed to get `pyo3` as a dependency of package"

    real = LOGS / "cryptography-norust.log"
    whole = match_log(real)
    monkeypatch.setattr(hints_mod, "CHUNK_BYTES", 97)  # many blocks, cut mid-line
    assert match_log(real) == whole


def test_multi_megabyte_log_is_scanned_to_the_end():
    filler = (LOGS / "psycopg2-ok.log").read_text()
    error = "c.c:1:1: fatal error: lz4.h: No such file or directory\n"
    text = filler * (3_000_000 // len(filler)) + error
    (hint,) = match_log(text)
    assert hint.id == "lz4" and hint.line_no == text.count("\n")


def test_custom_catalog_list_limits_the_entries():
    only = [e for e in load_catalog() if e.id == "zstd"]
    log = "x.c:1:1: fatal error: zstd.h: No such file or directory\n/bin/sh: 1: swig: not found\n"
    assert [h.id for h in match_log(log, only)] == ["zstd"]


# ------------------------------------------------------------------ recipes and deps


def test_recipe_from_hints_dedups_and_keeps_order():
    found = (
        match_log(LOGS / "lxml.log")
        + match_log(LOGS / "lxml.log")
        + match_log(LOGS / "h5py.log")
        + match_log(LOGS / "cmake-too-old.log")
        + match_log(LOGS / "cmake-too-old.log")
    )
    apt = recipe_from_hints(found, "apt")
    assert apt["system_packages"] == ["libxml2-dev", "libxslt1-dev", "libhdf5-dev", "cmake"]
    assert apt["recipe_steps"] == [["python3", "-m", "pip", "install", "cmake>=9.1"]]
    assert apt["dnf_repos"] == []
    dnf = recipe_from_hints(found, "dnf")
    assert dnf["system_packages"] == ["libxml2-devel", "libxslt-devel", "hdf5-devel", "cmake"]
    assert dnf["dnf_repos"] == ["crb", "epel"]
    with pytest.raises(ValueError):
        recipe_from_hints(found, "zypper")  # type: ignore[arg-type]


def test_recipe_env_values_merge():
    found = match_log(
        "a.o: relocation truncated to fit: R_390_GOT12 against symbol `x'\n"
        "a.c:1:1: error: implicit declaration of function ‘f’ [-Wimplicit-function-declaration]\n"
    )
    env = recipe_from_hints(found, "dnf")["env"]
    assert env["CFLAGS"].split()[0] == "-fPIC"
    assert "-Wno-error=implicit-function-declaration" in env["CFLAGS"].split()


def test_python_deps_from_hints():
    assert python_deps_from_hints(match_log(LOGS / "build-dep-missing.log")) == ["numpy"]
    assert python_deps_from_hints(match_log(LOGS / "import-at-build.log")) == ["cython"]
    assert python_deps_from_hints(match_log(LOGS / "scikit-build-cmake-pin.log")) == ["cmake"]
    lines = [
        ("ModuleNotFoundError: No module named 'yaml'", ["pyyaml"]),
        ("ModuleNotFoundError: No module named 'google.protobuf'", ["protobuf"]),
        ("BackendUnavailable: Cannot import 'poetry.core.masonry.api'", ["poetry-core"]),
        ("ERROR: No matching distribution found for Foo_Bar.baz>=1", ["foo-bar-baz"]),
        ("ModuleNotFoundError: No module named 'skbuild.command'", ["scikit-build"]),
        ("ModuleNotFoundError: No module named 'distutils'", []),
        ("ModuleNotFoundError: No module named 'setuptools.command.test'", []),
        ("ModuleNotFoundError: No module named '_ctypes'", []),
    ]
    for line, deps in lines:
        assert python_deps_from_hints(match_log(line + "\n")) == deps, line
    twice = match_log(LOGS / "import-at-build.log") + match_log(LOGS / "import-at-build.log")
    assert python_deps_from_hints(twice) == ["cython"]


def test_hint_json_round_trip():
    (hint,) = match_log(LOGS / "build-dep-missing.log")
    data = hint.to_json()
    for key in ("id", "category", "line_no", "line", "dnf", "apt", "steps", "note", "captures"):
        assert key in data
    assert data["captures"] == {"requirement": "numpy==0.9.2", "dep": "numpy"}
    again = Hint.from_json(json.loads(json.dumps(data)))
    assert again == hint and len({again, hint}) == 1


# ------------------------------------------------------------------ validation


GOOD = """\
- id: good-one
  category: headers
  patterns: ['fatal error: good\\.h']
  dnf: [good-devel]
  apt: [libgood-dev]
  steps: []
  note: fine
"""


def _bad(tmp_path: Path, text: str) -> str:
    """The one-line message load_catalog gives for GOOD followed by `text`."""
    path = tmp_path / "hints.yaml"
    path.write_text(GOOD + text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path} entry #2")
    return message


def _entry(name: str, **changes: str) -> str:
    """GOOD as entry `name`, each `key=new text` replacing that key's line."""
    text = GOOD.replace("good-one", name)
    for key, value in changes.items():
        text = re.sub(rf"^  {key}:.*\n", value, text, flags=re.MULTILINE)
    return text


# a bad second entry -> what the message must say after "entry #2 (<id>): "
SCHEMA_CASES = [
    (_entry("no-note", note=""), "no-note): note: missing"),
    (_entry("bad-cat", category="  category: misc\n"), "bad-cat): category: 'misc' is not one of"),
    (_entry("Not_Kebab"), "(Not_Kebab): id: 'Not_Kebab' does not match"),
    (_entry("blank-note", note="  note: '  '\n"), "blank-note): note: "),
    (_entry("bad-step", steps="  steps: [[]]\n"), "bad-step): steps[0]: [] should be non-empty"),
    (_entry("bad-pkg", apt="  apt: ['libx; rm']\n"), "bad-pkg): apt[0]: 'libx; rm' does not match"),
    (_entry("num-env") + "  env: {CFLAGS: 2}\n", "num-env): env.CFLAGS: 2 is not of type 'string'"),
    (_entry("repo") + "  dnf_repos: [powertools]\n", "repo): dnf_repos[0]: 'powertools' is"),
    (_entry("flag") + "  fallback: maybe\n", "flag): fallback: 'maybe' is not of type 'boolean'"),
    (_entry("extra") + "  bogus: 1\n", "extra): bogus: unknown field"),
    (_entry("no-list", patterns="  patterns: 'one'\n"), "no-list): patterns: 'one' is not of type"),
    ("- just text\n", "entry #2: entry: 'just text' is not of type 'object'"),
]


@pytest.mark.parametrize(("extra", "message"), SCHEMA_CASES)
def test_catalog_schema_names_the_entry_and_the_field(tmp_path, extra, message):
    assert message in _bad(tmp_path, extra)


def test_catalog_schema_says_in_words_what_a_pattern_rule_wants(tmp_path):
    assert "(kebab-case, lowercase letters and digits" in _bad(tmp_path, _entry("Not_Kebab"))
    assert "(a package name, letters, digits" in _bad(tmp_path, _entry("p", dnf="  dnf: [a;b]\n"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (GOOD, "(good-one): id: duplicate hint id 'good-one' (entry #1 has it too)"),
        (_entry("bad-regex").replace("good\\.h", "(unclosed"), "(bad-regex): patterns: bad regex"),
        (_entry("no-cap", note="  note: needs {version}\n"), "(no-cap): patterns: pattern"),
        (_entry("no-literal").replace("'fatal error: good\\.h'", "'\\w+'"),
         "(no-literal): patterns: regex '\\\\w+' needs literal text of at least 3"),
        (_entry("bad-header") + "  headers: ['x(\\.h']\n", "(bad-header): headers: bad regex"),
        (_entry("none", patterns="  patterns: []\n"), "(none): patterns: none, and no headers"),
    ],
)
def test_load_catalog_names_the_bad_entry(tmp_path, extra, message):
    assert message in _bad(tmp_path, extra)


def test_schema_is_valid_and_lists_what_the_loader_expands():
    schema = hint_catalog.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    fields = set(schema["items"]["properties"])
    assert set(hint_catalog.EXPANSIONS) <= fields
    assert CATEGORIES == set(schema["items"]["properties"]["category"]["enum"])


def test_load_catalog_is_cached_per_path(tmp_path):
    path = tmp_path / "hints.yaml"
    path.write_text(GOOD)
    first = load_catalog(path)
    assert load_catalog(path)[0] is first[0]
    assert [e.id for e in first] == ["good-one"]
    assert load_catalog()[0] is load_catalog()[0]
    assert [h.id for h in match_log("fatal error: good.h\n", path)] == ["good-one"]
