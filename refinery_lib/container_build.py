"""One build attempt, run INSIDE a builder container by the container's own Python.

Standard library only (Python >= 3.8), because the container has none of the refinery's
dependencies: the host mounts this file read-only and runs

    python3 container_build.py /work/request.json

The request (written by `refinery_lib.container_attempt`) says what to build; this script
1. checks that the container's Python matches the target python tag,
2. installs the requested system packages (dnf or apt-get) and runs the recipe steps,
3. builds the wheel with `python -m build --wheel` (isolated, or `--no-isolation`),
4. repairs it with `auditwheel repair --plat <requested>` and checks the result with
   `auditwheel show`: the tag kept is one `auditwheel show` says the wheel satisfies, never more,
5. installs the repaired wheel into a scratch folder and imports each top-level module on this
   machine (s390x under qemu when emulated), recording `platform.machine()`,
and writes a JSON result (`request["result"]`) that the host reads. Output goes to stdout,
which the host appends to the attempt's log.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
import zipfile

try:  # on the host, a module of the package
    from .platform_tags import host_arch, split_platform
except ImportError:  # a script in a builder container: platform_tags.py is mounted beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _tags = importlib.import_module("platform_tags")
    host_arch, split_platform = _tags.host_arch, _tags.split_platform

MARK = "== [refinery]"
SMOKE_MARK = "REFINERY-SMOKE "
_PKG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._:=~*-]*$")


class StageError(Exception):
    """A stage failed; `detail` is the one line the manifest shows."""

    def __init__(self, stage: str, detail: str, **extra):
        super().__init__(detail)
        self.stage = stage
        self.detail = detail
        self.extra = extra


def say(message: str) -> None:
    print(f"{MARK} {message}", flush=True)


def run(argv, *, cwd=None, env=None, capture=False, check=True, stage="run", timeout=None):
    """Run an argument list (never a shell); echo captured output so the log has it all."""
    argv = [str(a) for a in argv]
    print("$ " + " ".join(_quote(a) for a in argv), flush=True)
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            text=True, timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise StageError(stage, f"command not found in the image: {argv[0]} ({exc})") from exc
    except subprocess.TimeoutExpired as exc:
        raise StageError(stage, f"timed out after {timeout} s: {argv[0]}") from exc
    out = proc.stdout or ""
    if capture and out:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
        sys.stdout.flush()
    if check and proc.returncode != 0:
        raise StageError(stage, f"{' '.join(argv[:4])} ... exited {proc.returncode}",
                         output=out[-4000:])
    return proc.returncode, out


def _quote(arg: str) -> str:
    return arg if re.match(r"^[\w@%+=:,./-]+$", arg) else "'" + arg.replace("'", "'\\''") + "'"


# --- platform tags -------------------------------------------------------------------------


def wheel_platforms(wheel_name: str):
    """Platform tags of a wheel file name (compressed tag sets expanded)."""
    parts = wheel_name[: -len(".whl")].split("-")
    return parts[-1].split(".") if len(parts) >= 5 else []


def version_tuple(text: str):
    return tuple(int(p) for p in re.findall(r"\d+", text))


# --- the stages ----------------------------------------------------------------------------


def check_python(req: dict) -> dict:
    info = {
        "executable": sys.executable,
        "version": platform.python_version(),
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
        "libc": list(platform.libc_ver()),
    }
    want = req.get("python_tag") or ""
    have = "cp{}{}".format(*sys.version_info[:2])
    if want.startswith("cp") and sys.implementation.name == "cpython" and want != have:
        raise StageError(
            "python",
            f"the image's {sys.executable} is Python {platform.python_version()} ({have}) but "
            f"the target is {want}: use an image with that Python",
        )
    return info


def cgroup_limits() -> dict:
    """The limits this container really runs under (so the host can prove they arrived)."""
    limits: dict = {}

    def read(path):
        try:
            with open(path) as fh:
                return fh.read().strip()
        except OSError:
            return None

    cpu_max = read("/sys/fs/cgroup/cpu.max")  # cgroup v2
    if cpu_max:
        quota, _, period = cpu_max.partition(" ")
        if quota != "max" and period:
            limits["cpus"] = round(int(quota) / int(period), 3)
    else:
        for base in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
            quota, period = read(base + "/cpu.cfs_quota_us"), read(base + "/cpu.cfs_period_us")
            if quota and period and int(quota) > 0:
                limits["cpus"] = round(int(quota) / int(period), 3)
                break
    mem = read("/sys/fs/cgroup/memory.max") or read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if mem and mem != "max" and int(mem) < (1 << 60):
        limits["memory_bytes"] = int(mem)
    limits["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    limits["nproc"] = list(resource.getrlimit(resource.RLIMIT_NPROC))
    limits["cpu_count"] = os.cpu_count()
    return limits


def package_family(req: dict) -> str:
    family = req.get("family")
    if family:
        return family
    if shutil.which("apt-get"):
        return "apt"
    if shutil.which("dnf") or shutil.which("microdnf") or shutil.which("yum"):
        return "dnf"
    raise StageError("system", "no dnf or apt-get in the image to install system packages")


def install_system_packages(req: dict) -> None:
    pkgs = list(req.get("system_packages") or [])
    if not pkgs:
        return
    bad = [p for p in pkgs if not _PKG_NAME.match(p)]
    if bad:
        raise StageError("system", f"invalid system package name(s): {', '.join(bad)}")
    family = package_family(req)
    say(f"stage system: installing {' '.join(pkgs)} with {family}")
    if family == "apt":
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update"], env=env, stage="system")
        run(["apt-get", "install", "-y", "--no-install-recommends", *pkgs], env=env,
            stage="system")
    elif family == "dnf":
        tool = shutil.which("dnf") or shutil.which("microdnf") or shutil.which("yum") or "dnf"
        run([tool, "install", "-y", "--setopt=install_weak_deps=False", *pkgs], stage="system")
    else:
        raise StageError("system", f"unknown package family {family!r} (dnf or apt)")


def _safe_members(archive_names, dest):
    root = os.path.realpath(dest)
    for name in archive_names:
        target = os.path.realpath(os.path.join(dest, name))
        if target != root and not target.startswith(root + os.sep):
            raise StageError("unpack", f"sdist member escapes its folder: {name}")


def unpack_sdist(sdist: str, dest: str) -> str:
    """Unpack the sdist (read-only mount) into the work dir; return the project folder."""
    os.makedirs(dest, exist_ok=True)
    if sdist.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            _safe_members(zf.namelist(), dest)
            zf.extractall(dest)
    else:
        with tarfile.open(sdist) as tf:
            members = tf.getmembers()
            _safe_members([m.name for m in members], dest)
            for m in members:
                if m.issym() or m.islnk():
                    _safe_members([os.path.join(os.path.dirname(m.name), m.linkname)], dest)
                if m.isdev():
                    raise StageError("unpack", f"sdist holds a device file: {m.name}")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:
                tf.extractall(dest)  # noqa: S202 - members checked above
    entries = [e for e in os.listdir(dest) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isdir(os.path.join(dest, entries[0])):
        return os.path.join(dest, entries[0])
    return dest


def run_recipe_steps(req: dict, src: str) -> None:
    for i, step in enumerate(req.get("recipe_steps") or [], 1):
        if not isinstance(step, list) or not step or not all(isinstance(a, str) for a in step):
            raise StageError("recipe", f"recipe step {i} is not a list of strings: {step!r}")
        say(f"stage recipe: step {i}")
        run(step, cwd=src, stage="recipe")


def build_wheel(req: dict, src: str, dist: str) -> str:
    variant = req.get("variant") or "isolated"
    argv = [sys.executable, "-m", "build", "--wheel", "--outdir", dist]
    for setting in req.get("config_settings") or []:
        if not isinstance(setting, str) or "=" not in setting:
            raise StageError("build", f"a config setting must be KEY=VALUE: {setting!r}")
        argv.append(f"--config-setting={setting}")
    if variant == "no-isolation":
        argv.append("--no-isolation")
    elif variant != "isolated":
        raise StageError("build", f"unknown build variant {variant!r} (isolated, no-isolation)")
    argv.append(src)
    say(f"stage build: variant {variant}")
    run(argv, cwd=src, stage="build")
    wheels = sorted(f for f in os.listdir(dist) if f.endswith(".whl"))
    if len(wheels) != 1:
        raise StageError("build", f"expected one wheel in {dist}, found {len(wheels)}")
    return os.path.join(dist, wheels[0])


def auditwheel_show(wheel: str):
    """(text, parsed JSON or None) of `auditwheel show`; JSON needs auditwheel >= 6.2."""
    aw = [sys.executable, "-m", "auditwheel"]
    _, text = run([*aw, "show", wheel], capture=True, check=False, stage="show")
    code, out = run([*aw, "show", "--json", wheel], capture=True, check=False, stage="show")
    data = None
    start = 0 if out.startswith("{") else out.find("\n{") + 1
    if code == 0 and (start > 0 or out.startswith("{")):
        try:
            data, _ = json.JSONDecoder().raw_decode(out[start:])
        except ValueError:
            data = None
    if not isinstance(data, dict):
        data = parse_show_text(text)
    return text.strip(), data


def parse_show_text(text: str) -> dict:
    """The parts of plain `auditwheel show` output the refinery needs (older auditwheel)."""
    flat = " ".join(text.split())
    data: dict = {"versioned_symbols": {}}
    m = re.search(r'consistent with the following platform tag: "([^"]+)"', flat)
    if m:
        data["overall_tag"] = m.group(1)
    m = re.search(r'This constrains the platform tag to "([^"]+)"', flat)
    data["sym_tag"] = m.group(1) if m else data.get("overall_tag")
    for lib, versions in re.findall(r"(\S+\.so[.\d]*) with versions \{([^}]*)\}", flat):
        data["versioned_symbols"][lib] = sorted(re.findall(r"'([^']+)'", versions))
    return data


def policy_table():
    """auditwheel's manylinux policy list (symbol versions allowed per policy), if readable."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("auditwheel")
    except (ImportError, ValueError):
        return []
    if not spec or not spec.submodule_search_locations:
        return []
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "policy", "manylinux-policy.json")
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
    return []


def allowed_versions(policies, glibc, arch):
    """Symbol versions (e.g. {'GLIBC': {...}}) allowed by manylinux_<glibc> on `arch`."""
    name = "manylinux_{}_{}".format(*glibc)
    for p in policies:
        if p.get("name") == name:
            return {k: set(v) for k, v in p.get("symbol_versions", {}).get(arch, {}).items()}
    return None


def blocking_versions(versioned: dict, glibc, arch, policies):
    """Symbol versions the wheel uses that manylinux_<glibc> does not allow, per library."""
    allowed = allowed_versions(policies, glibc, arch)
    blockers = {}
    for lib, versions in versioned.items():
        bad = []
        for v in versions:
            prefix, _, number = v.partition("_")
            if allowed is not None and prefix in allowed:
                if v.split("_", 1)[1] not in allowed[prefix]:
                    bad.append(v)
            elif prefix == "GLIBC" and version_tuple(number) > tuple(glibc):
                bad.append(v)
        if bad:
            blockers[lib] = sorted(bad, key=version_tuple)
    return blockers


def symbols_needing(wheel: str, versions, tmp: str) -> dict:
    """{version: [symbol, ...]} of undefined dynamic symbols with those versions (objdump)."""
    wanted = set(versions)
    found: dict = {}
    if not wanted or not shutil.which("objdump"):
        return found
    out_dir = os.path.join(tmp, "elf")
    shutil.rmtree(out_dir, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if re.search(r"\.so(\.|$)", n)]
        _safe_members(names, out_dir)
        for n in names:
            zf.extract(n, out_dir)
    pattern = re.compile(r"\*UND\*\s+\S+\s+(?:\()?([A-Za-z]+_[\d.]+)\)?\s+(\S+)")
    for n in names:
        code, out = run(["objdump", "-T", os.path.join(out_dir, n)], capture=True, check=False,
                        stage="show")
        for line in out.splitlines():
            m = pattern.search(line)
            if m and m.group(1) in wanted:
                found.setdefault(m.group(1), set()).add(m.group(2))
    return {k: sorted(v) for k, v in found.items()}


def repair(req: dict, wheel: str, work: str) -> dict:
    """auditwheel repair to the requested policy, then trust only what `auditwheel show` says."""
    requested = req["platform_tag"]
    name = os.path.basename(wheel)
    plats = wheel_platforms(name)
    info: dict = {"requested": requested, "grafted_libs": [], "show": "", "tag": None}
    if plats == ["any"]:
        say("stage repair: pure wheel, nothing to repair")
        info.update(wheel=wheel, tag="any", met=True)
        return info
    family, glibc, arch = split_platform(requested)
    if family is None or not plats or not any(p.startswith("linux_") for p in plats):
        # not a manylinux/musllinux target (e.g. linux_s390x), or already tagged by the backend
        say(f"stage repair: target {requested} needs no auditwheel repair")
        info.update(wheel=wheel, tag=plats[0] if plats else None, met=requested in plats)
        if not info["met"]:
            raise StageError("repair", f"built {name} is not tagged {requested}", policy=info)
        return info
    libc = platform.libc_ver()[0] or "unknown"
    if family == "musllinux" and libc == "glibc":
        raise StageError("policy", f"{requested} needs a musl-based builder image; this one "
                         "links against glibc (use --container-image with an Alpine-based "
                         "builder)", policy=info)
    built_arch = plats[0][len("linux_"):]
    if built_arch != arch:
        raise StageError("repair", f"built {name} is for {built_arch}, the target is {arch} "
                         f"(is the image for {arch}?)", policy=info)

    # auditwheel offers this machine's policies by name; for another arch's wheel (a cross
    # build) `auto` takes the most compatible policy the wheel meets, checked below as always
    plat = requested if arch == host_arch() else "auto"
    say(f"stage repair: auditwheel repair --plat {plat}")
    out_dir = os.path.join(work, "repaired")
    shutil.rmtree(out_dir, ignore_errors=True)
    ldpaths = req.get("ldpaths") or []
    extra = ["--ldpaths", os.pathsep.join(ldpaths)] if ldpaths else []
    code, out = run([sys.executable, "-m", "auditwheel", "repair", "--plat", plat, *extra,
                     "-w", out_dir, wheel], capture=True, check=False, stage="repair")
    repaired = None
    if code == 0 and os.path.isdir(out_dir):
        found = sorted(f for f in os.listdir(out_dir) if f.endswith(".whl"))
        repaired = os.path.join(out_dir, found[0]) if len(found) == 1 else None
    shown = repaired or wheel
    text, data = auditwheel_show(shown)
    info["show"] = text
    info["show_json"] = data
    overall = data.get("overall_tag") or ""
    o_family, o_glibc, _ = split_platform(overall)
    info["achieved"] = overall
    satisfiable = o_family == family and o_glibc is not None and tuple(o_glibc) <= tuple(glibc)
    if not satisfiable:
        policies = policy_table()
        versioned = data.get("versioned_symbols") or {}
        blockers = blocking_versions(versioned, glibc, arch, policies) if glibc else {}
        symbols = symbols_needing(shown, [v for vs in blockers.values() for v in vs], work)
        upgrades = data.get("policy_upgrades") or {}
        wanted = "manylinux_{}_{}".format(*glibc) if glibc else ""
        libs = sorted(upgrades.get(wanted, {}).get("libs_to_eliminate", []))
        parts = []
        for lib, versions in blockers.items():
            named = []
            for v in versions:
                syms = symbols.get(v)
                named.append(f"{v} ({', '.join(syms[:5])})" if syms else v)
            parts.append(f"{lib} {', '.join(named)}")
        if libs:
            parts.append("external libraries " + ", ".join(libs))
        why = "; ".join(parts) or (out.strip().splitlines() or ["auditwheel repair failed"])[-1]
        detail = (
            f"{name} cannot meet {requested}: auditwheel show says it is consistent with "
            f"{overall or 'no manylinux tag'} at best; blocking: {why}"
        )
        info.update(blockers=blockers, blocking_symbols=symbols, libs_to_eliminate=libs,
                    met=False, repair_exit=code)
        raise StageError("policy", detail, policy=info)
    if repaired is None:
        # the symbols allow the policy, so auditwheel itself failed (a tool, a library to graft)
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        raise StageError("repair", f"auditwheel repair --plat {requested} failed (exit {code}): "
                         f"{lines[-1] if lines else 'no output'}", policy=info)
    # Every manylinux tag in the repaired name must be one the wheel satisfies.
    claimed = wheel_platforms(os.path.basename(repaired))
    honest = []
    for p in claimed:
        p_family, p_glibc, _ = split_platform(p)
        if p_family == o_family and p_glibc is not None and tuple(p_glibc) >= tuple(o_glibc):
            honest.append(p)
    if set(honest) != set(claimed):
        raise StageError("policy", f"auditwheel wrote {claimed} but show supports only "
                         f"{overall} and later: refusing to claim more", policy=info)
    with zipfile.ZipFile(repaired) as zf:
        info["grafted_libs"] = sorted(
            n for n in zf.namelist() if re.search(r"\.libs/[^/]+\.so", n)
        )
    info.update(wheel=repaired, tag=overall, met=True, claimed=claimed)
    return info


def top_level_modules(wheel: str) -> list:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        tops = [n for n in names if re.match(r"^[^/]+\.dist-info/top_level\.txt$", n)]
        mods = set()
        if tops:
            for line in zf.read(tops[0]).decode("utf-8", "replace").splitlines():
                line = line.strip().replace("/", ".")
                if line:
                    mods.add(line)
        if not mods:
            for n in names:
                first = n.split("/", 1)[0]
                if first.endswith((".dist-info", ".data", ".libs")) or first == "__pycache__":
                    continue
                if "/" in n:
                    mods.add(first)
                elif n.endswith(".py"):
                    mods.add(n[:-3])
                elif re.search(r"\.(so|pyd)$", n):
                    mods.add(n.split(".", 1)[0])
    return sorted(m for m in mods if all(part.isidentifier() for part in m.split(".")))


def wheel_requirements(wheel: str) -> list:
    """Requires-Dist lines of the wheel that apply without extras."""
    with zipfile.ZipFile(wheel) as zf:
        meta = [n for n in zf.namelist() if re.match(r"^[^/]+\.dist-info/METADATA$", n)]
        text = zf.read(meta[0]).decode("utf-8", "replace") if meta else ""
    reqs = []
    for line in text.splitlines():
        if not line.strip():
            break  # the body (long description) starts after the first blank line
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            reqs.append(line.split(":", 1)[1].strip())
    return reqs


SMOKE_CODE = r"""
import importlib, json, platform, sys, traceback
site = sys.argv[1]
sys.path.insert(0, site)
result = {"machine": platform.machine(), "python": platform.python_version(), "modules": {}}
for name in sys.argv[2:]:
    try:
        mod = importlib.import_module(name)
        where = getattr(mod, "__file__", None) or ""
        if where and not where.startswith(site):
            result["modules"][name] = "imported from outside the wheel: " + where
        else:
            result["modules"][name] = "ok"
    except BaseException as exc:  # noqa: BLE001 - any import failure is the finding
        result["modules"][name] = "%s: %s" % (type(exc).__name__, exc)
        traceback.print_exc()
print("REFINERY-SMOKE " + json.dumps(result), flush=True)
"""


def unpack_plain_wheel(wheel: str, site: str) -> bool:
    """Unpack a wheel with no .data folder into `site` (every member checked to stay inside);
    False when it has one (scripts, headers: pip places those)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        if any(n.split("/", 1)[0].endswith(".data") for n in names):
            return False
        _safe_members(names, site)
        zf.extractall(site)
    return True


def smoke_test(req: dict, wheel: str, work: str) -> dict:
    """Install the wheel into a scratch folder and import its top-level modules here."""
    say("stage smoke: install and import on " + platform.machine())
    site = os.path.join(work, "smoke", "site")
    shutil.rmtree(os.path.dirname(site), ignore_errors=True)
    os.makedirs(site)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    base = [sys.executable, "-m", "pip", "install", "--target", site, "--no-compile",
            "--only-binary", ":all:"]
    installed = False
    deps = not wheel_requirements(wheel)  # nothing to install counts as installed
    if not deps:
        code, _ = run([*base, wheel], env=env, capture=True, check=False, stage="smoke")
        installed = deps = code == 0
        if not deps:
            say("stage smoke: dependencies not installable here; importing without them")
    if not installed and deps and unpack_plain_wheel(wheel, site):
        # nothing to resolve and nothing to place: unpacking is what pip would do, without
        # pip's start under qemu (seconds per wheel)
        say("stage smoke: wheel without requirements or .data unpacked")
    elif not installed:
        shutil.rmtree(site, ignore_errors=True)
        os.makedirs(site)
        run([*base, "--no-deps", "--no-index", wheel], env=env, capture=True, stage="smoke")
    modules = top_level_modules(wheel)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    code, out = run([sys.executable, "-s", "-c", SMOKE_CODE, site, *modules],
                    cwd=os.path.dirname(site), env=env, capture=True, check=False,
                    stage="smoke")
    parsed: dict = {}
    for line in out.splitlines():
        if line.startswith(SMOKE_MARK):
            parsed = json.loads(line[len(SMOKE_MARK):])
    results = parsed.get("modules", {})
    ok = bool(modules) and code == 0 and all(v == "ok" for v in results.values()) \
        and set(results) == set(modules)
    return {
        "ok": ok,
        "modules": results,
        "arch": parsed.get("machine") or platform.machine(),
        "python": parsed.get("python"),
        "dependencies_installed": deps,
        "output": out[-4000:],
    }


# --- driver --------------------------------------------------------------------------------


def write_result(path: str, result: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: container_build.py REQUEST.json", file=sys.stderr)
        return 2
    with open(argv[0]) as fh:
        req = json.load(fh)
    work = req.get("work", "/work")
    result_path = req.get("result") or os.path.join(work, "result.json")
    result: dict = {"ok": False, "stage": "start", "detail": "", "timings": {}}
    started = time.time()
    stage_start = started

    def mark(stage):
        nonlocal stage_start
        now = time.time()
        result["timings"][result["stage"]] = round(now - stage_start, 3)
        result["stage"] = stage
        stage_start = now

    try:
        mark("python")
        result["python"] = check_python(req)
        result["limits"] = cgroup_limits()
        say(f"python {result['python']['version']} on {result['python']['machine']}; "
            f"limits {json.dumps(result['limits'], sort_keys=True)}")
        if req.get("install_only"):
            # the cross builder's target libraries: installed here, the container committed
            mark("system")
            install_system_packages(req)
            mark("done")
            result["ok"] = True
            result["detail"] = "installed " + " ".join(req.get("system_packages") or [])
            return 0
        if req.get("smoke_only"):
            # a wheel built elsewhere (the cross builder): only its import on this machine
            mark("smoke")
            wheel = req["wheel"]
            result["wheel"] = os.path.basename(wheel)
            result["smoke"] = smoke_test(req, wheel, work)
            _check_smoke(result)
            mark("done")
            result["ok"] = True
            result["detail"] = f"imported {result['wheel']}"
            return 0
        mark("system")
        install_system_packages(req)
        mark("unpack")
        src = unpack_sdist(req["sdist"], os.path.join(work, "src"))
        mark("recipe")
        run_recipe_steps(req, src)
        mark("build")
        dist = os.path.join(work, "dist")
        shutil.rmtree(dist, ignore_errors=True)
        built = build_wheel(req, src, dist)
        result["built_wheel"] = os.path.basename(built)
        mark("repair")
        info = repair(req, built, work)
        result["policy"] = {k: v for k, v in info.items() if k not in ("show", "wheel")}
        result["auditwheel_show"] = info.get("show", "")
        result["auditwheel_tag"] = info.get("tag")
        result["grafted_libs"] = info.get("grafted_libs", [])
        out_dir = os.path.join(work, "out")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        final = os.path.join(out_dir, os.path.basename(info["wheel"]))
        shutil.copyfile(info["wheel"], final)
        result["wheel"] = os.path.basename(final)
        if req.get("smoke", True):
            mark("smoke")
            result["smoke"] = smoke_test(req, final, work)
            _check_smoke(result)
        mark("done")
        result["ok"] = True
        result["detail"] = f"built {result['wheel']}"
    except StageError as exc:
        result["detail"] = exc.detail
        result["failed_stage"] = exc.stage
        for key, value in exc.extra.items():
            result.setdefault(key, value)
        if "policy" in exc.extra:
            result["auditwheel_show"] = exc.extra["policy"].get("show", "")
            result["policy"] = {k: v for k, v in exc.extra["policy"].items() if k != "show"}
        say(f"FAILED in stage {exc.stage}: {exc.detail}")
    except Exception as exc:  # noqa: BLE001 - the host needs a result whatever broke
        result["detail"] = f"{type(exc).__name__}: {exc}"
        result["failed_stage"] = result.get("stage")
        traceback.print_exc()
    finally:
        result["timings"][result["stage"]] = round(time.time() - stage_start, 3)
        result["duration"] = round(time.time() - started, 3)
        write_result(result_path, result)
        say(("OK: " if result["ok"] else "FAILED: ") + result["detail"])
    return 0 if result["ok"] else 1


def _check_smoke(result: dict) -> None:
    if not result["smoke"]["ok"]:
        bad = {m: s for m, s in result["smoke"]["modules"].items() if s != "ok"}
        what = json.dumps(bad) if bad else "no importable modules found"
        raise StageError("smoke", f"import of {result['wheel']} failed on "
                         f"{result['smoke']['arch']}: {what}")


if __name__ == "__main__":
    sys.exit(main())
