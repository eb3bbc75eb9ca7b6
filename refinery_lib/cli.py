"""`refinery`: flags -> Snakemake config -> the workflow in this repository; plus subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import config as cfg
from .errors import RefineryError
from .settings import Settings

RESULTS = "results"
#: extra workflow runs when failed builds reveal missing Python dependencies
REQUEUE_ROUNDS = 2
#: seconds Snakemake gets after Ctrl-C to end its jobs (and cancel cluster jobs) and unlock
INTERRUPT_GRACE = 300


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="refinery",
        description="Refine a wheelhouse for any platform into wheels for the target "
        "(default CPython 3.11 on manylinux2014_s390x). Subcommands: history.",
    )
    paths = p.add_argument_group("paths")
    paths.add_argument("--input", required=True, help="folder of input wheels")
    paths.add_argument("--output", required=True, help="folder for refined wheels and manifest")
    paths.add_argument("--cache", required=True, help="folder for downloads, logs, history")
    paths.add_argument("--manifest", help="manifest path (default OUTPUT/manifest.json)")
    paths.add_argument("--history-db", help="SQLite history (default CACHE/history.db)")
    paths.add_argument("--config", help="config file (TOML, JSON or YAML) with workflow settings")
    paths.add_argument(
        "--replay",
        metavar="MANIFEST",
        help="rebuild the versions, variants, recipes and build-dependency "
        "versions an earlier manifest recorded",
    )
    tgt = p.add_argument_group("target")
    tgt.add_argument("--python", help="target CPython version, e.g. 3.11")
    tgt.add_argument(
        "--platform-tag", help="target platform tag, e.g. manylinux2014_s390x, or native"
    )
    st = p.add_argument_group("strategy")
    st.add_argument("--upgrade-strategy", choices=["pinned", "eager"])
    st.add_argument("--fallback-latest", action="store_true", default=None)
    st.add_argument("--expansion-depth", type=int, help="levels of missing dependencies to plan")
    st.add_argument("--skip-known-failures", action="store_true", default=None)
    st.add_argument(
        "--no-binary",
        action="append",
        default=None,
        metavar="NAME",
        help="build NAME from source even if the index has a target wheel "
        "(:all: for every package); repeatable, comma-separated",
    )
    st.add_argument(
        "--extra",
        action="append",
        default=None,
        metavar="NAME[EXTRA,...]",
        help="request extras of a package, e.g. 'requests[socks]'",
    )
    at = p.add_argument_group("attempts")
    at.add_argument("--max-attempts", type=int)
    at.add_argument("--attempt-timeout", type=float, help="seconds per attempt")
    at.add_argument("--attempt-backoff-base", type=float, help="seconds; doubles per attempt")
    at.add_argument("--attempt-backoff-max", type=float, help="cap of the backoff, seconds")
    rc = p.add_argument_group("recipes")
    rc.add_argument(
        "--allow-system-recipes",
        action="store_true",
        default=None,
        help="let the local builder run recipe steps and installs on this host",
    )
    rc.add_argument(
        "--no-system-recipes", action="store_true", default=None, help="never apply recipes"
    )
    rc.add_argument(
        "--dry-run-recipes",
        action="store_true",
        default=None,
        help="log the recipe commands, run none",
    )
    rc.add_argument(
        "--auto-apply-suggestions",
        action="store_true",
        default=None,
        help="turn hints of a failed package into a recipe for one extra attempt",
    )
    co = p.add_argument_group("builders")
    co.add_argument(
        "--builder",
        choices=["auto", "local", "container", "cross"],
        help="who compiles (default auto: local for --platform-tag native, container when "
        "--container-preset/--container-image is given, local for this host's arch, else "
        "cross: zig on this host for the target, imported under qemu in the target image)",
    )
    co.add_argument("--container-engine", choices=["podman", "docker"])
    co.add_argument("--container-preset", choices=["rocky", "fedora", "ubuntu", "debian"])
    co.add_argument("--container-image", help="a builder image of your own")
    co.add_argument("--container-cpu", help="CPU limit per build container, e.g. 2")
    co.add_argument("--container-memory", help="memory limit per build container, e.g. 4g")
    co.add_argument(
        "--container-network",
        choices=["on", "off"],
        help="off runs builds with --network none on pre-fetched files",
    )
    ix = p.add_argument_group("index")
    ix.add_argument("--index-url")
    ix.add_argument("--extra-index-url", action="append", default=None)
    ix.add_argument("--trusted-host", action="append", default=None)
    ex = p.add_argument_group("execution")
    ex.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1)
    ex.add_argument(
        "--schedule",
        choices=["shortest-first", "fifo", "longest-first"],
        help="build order by observed duration: shortest-first (default: most packages "
        "early), longest-first (whole set soonest), or fifo (input order)",
    )
    ex.add_argument(
        "--profile",
        default="default",
        help="Snakemake workflow profile: a name under profiles/ or a folder",
    )
    ex.add_argument("--dry-run", "-n", action="store_true", help="show the jobs, run nothing")
    ex.add_argument(
        "--prefetch",
        action="store_true",
        help="warm-up: plan and download every sdist to build into CACHE/downloads, build "
        "nothing (the workflow's `prefetch` target)",
    )
    ex.add_argument(
        "--rebuild",
        action="append",
        default=None,
        metavar="NAME",
        help="rebuild NAME even if its wheel is up to date (repeatable)",
    )
    ex.add_argument("--no-closure-check", action="store_true")
    ex.add_argument("--verbose", "-v", action="store_true")
    ex.add_argument("snakemake_args", nargs="*", help="after --: passed to snakemake as is")
    return p


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < --config file < flags, validated against the workflow's schema."""
    conf = cfg.defaults()
    if args.config:
        conf = cfg.merge(conf, cfg.load_file(Path(args.config)))
    if args.replay:
        from .diff import load_manifest
        from .verify import replay_overrides

        conf = cfg.merge(conf, {"overrides": replay_overrides(load_manifest(Path(args.replay)))})
    flags: dict[str, Any] = {
        "input": str(Path(args.input).resolve()),
        "output": str(Path(args.output).resolve()),
        "cache": str(Path(args.cache).resolve()),
    }
    if args.manifest:
        flags["manifest"] = str(Path(args.manifest).resolve())
    if args.history_db:
        flags["history_db"] = str(Path(args.history_db).resolve())
    target = {
        k: v for k, v in {"python": args.python, "platform_tag": args.platform_tag}.items() if v
    }
    strategy: dict[str, Any] = {}
    if args.upgrade_strategy:
        strategy["upgrade"] = args.upgrade_strategy
    if args.fallback_latest:
        strategy["fallback_latest"] = True
    if args.expansion_depth is not None:
        strategy["expansion_depth"] = args.expansion_depth
    if args.skip_known_failures:
        strategy["skip_known_failures"] = True
    if args.no_binary:
        strategy["no_binary"] = [
            n.strip() for v in args.no_binary for n in v.split(",") if n.strip()
        ]
    if args.extra:
        from packaging.requirements import Requirement

        extras: dict[str, list[str]] = {}
        for item in args.extra:
            req = Requirement(item)
            extras.setdefault(req.name, []).extend(sorted(req.extras))
        strategy["extras"] = extras
    index: dict[str, Any] = {}
    if args.index_url:
        index["url"] = args.index_url
    if args.extra_index_url:
        index["extra_urls"] = args.extra_index_url
    if args.trusted_host:
        index["trusted_hosts"] = args.trusted_host
    build = {
        key: value
        for key, value in (
            ("max_attempts", args.max_attempts),
            ("attempt_timeout", args.attempt_timeout),
            ("backoff_base", args.attempt_backoff_base),
            ("backoff_max", args.attempt_backoff_max),
        )
        if value is not None
    }
    builder = {
        key: value
        for key, value in (
            ("engine", args.container_engine),
            ("preset", args.container_preset),
            ("image", args.container_image),
            ("cpu", args.container_cpu),
            ("memory", args.container_memory),
        )
        if value
    }
    if args.container_network:
        builder["network"] = args.container_network == "on"
    if args.builder:
        builder["kind"] = args.builder
    recipes: dict[str, Any] = {}
    if args.allow_system_recipes:
        recipes["allow_system"] = True
    if args.no_system_recipes:
        recipes["enabled"] = False
    if args.dry_run_recipes:
        recipes["dry_run"] = True
    if args.auto_apply_suggestions:
        recipes["auto_apply_suggestions"] = True
    for key, value in (
        ("target", target),
        ("strategy", strategy),
        ("index", index),
        ("build", build),
        ("recipes", recipes),
        ("builder", builder),
    ):
        if value:
            flags[key] = value
    if args.no_closure_check:
        flags["closure_check"] = False
    if args.schedule:
        flags["schedule"] = args.schedule
    if args.verbose:
        flags["verbose"] = True
    conf = cfg.merge(conf, flags)
    cfg.validate(conf)
    return conf


def snakemake_argv(
    args: argparse.Namespace, config_path: Path, workdir: Path, settings: Settings
) -> list[str]:
    wf = cfg.workflow_dir()
    profile = Path(args.profile)
    if not profile.is_dir():
        profile = wf / "profiles" / args.profile
    if not profile.is_dir():
        raise RefineryError(f"no profile {args.profile!r} (looked in {wf / 'profiles'})")
    argv = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(wf / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(profile),
        "--configfile",
        str(config_path),
        "--cores",
        str(max(1, args.jobs)),
    ]
    if not args.verbose:
        # before the options that follow: --quiet takes a list, which would swallow targets
        argv[3:3] = ["--quiet", "progress", "rules"]
    if args.dry_run:
        argv.append("--dry-run")
    argv += list(args.snakemake_args)
    if args.prefetch:
        argv.append("prefetch")
    forced = forced_targets(settings, args.rebuild or [])
    if forced:
        argv += ["--forcerun", *forced]
    return argv


def _prepare_image(settings: Settings) -> None:
    """Build the debian builder image on first use, with its progress on the terminal."""
    from .containers import ensure_image

    c = settings.container
    assert c is not None
    print(
        f"refinery: checking the {c.preset or c.image} builder image for {settings.target.arch}",
        file=sys.stderr,
    )
    ensure_image(
        c.engine,
        c.preset or None,
        settings.target.arch,
        Path(c.image_cache) if c.image_cache else None,
        progress=lambda line: print(f"  {line}", file=sys.stderr),
        image=c.image or None,
    )


def forced_targets(settings: Settings, names: list[str]) -> list[str]:
    """Build targets of `names` in the current plan; their cached wheels are forgotten."""
    from packaging.utils import canonicalize_name

    from .files import read_json

    wanted = {canonicalize_name(n) for n in names}
    plan = settings.paths.results / "plan" / "plan.json"
    if not wanted or not plan.exists():
        return []
    targets = []
    for node in read_json(plan)["nodes"]:
        if node["name"] in wanted and node["action"] == "build":
            # relative to the working directory, as the rule's output pattern is
            targets.append(f"{RESULTS}/outcomes/{node['key']}.json")
            records = settings.paths.wheels / ".records"
            for rec in records.glob(f"{node['key']}-*.json") if records.is_dir() else []:
                rec.unlink()
    return targets


def lock_cache(workdir: Path):
    """One run per cache: an exclusive flock on CACHE/workflow/.refinery.lock, or RefineryError.

    The kernel drops it when the last process holding the file dies, even by SIGKILL; Snakemake
    inherits it (pass_fds), so while it is free no Snakemake works in this folder and a lock of
    Snakemake's there is stale. Returns the open file: keep it open for the whole run.
    """
    import fcntl

    fh = open(workdir / ".refinery.lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RefineryError(
            f"another refinery run is using {workdir.parent}; wait for it to finish or stop it"
        ) from None
    return fh


def clear_stale_lock(smk: list[str], workdir: Path, env: dict[str, str]) -> None:
    """Remove the lock a killed Snakemake left (only call this while holding lock_cache)."""
    from . import proc

    locks = workdir / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        print(
            "refinery: the last run was killed; removing its stale Snakemake lock", file=sys.stderr
        )
        proc.run([*smk, "--unlock"], env=env, check=True, capture=True, new_session=False)


def run(argv: list[str]) -> int:
    import yaml

    from . import proc
    from .aggregate import summary_table
    from .errors import CommandError
    from .files import atomic_write_text, read_json

    args = _run_parser().parse_args(argv)
    if not Path(args.input).is_dir():
        raise RefineryError(f"--input {args.input} is not a folder")
    conf = config_from_args(args)
    settings = Settings.from_config(conf)
    # refinery keeps the per-step records in CACHE/workflow/results
    conf["results"] = RESULTS
    workdir = settings.paths.cache / "workflow"
    workdir.mkdir(parents=True, exist_ok=True)
    settings.paths.output.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "refinery-config.yaml"
    atomic_write_text(config_path, yaml.safe_dump(conf, sort_keys=True))
    # results are relative to the working directory, so the cache holds them
    settings = Settings.from_config(conf, workdir)
    if settings.container is not None and not args.dry_run:
        _prepare_image(settings)
    env = dict(os.environ)
    env["REFINERY_RUN_ID"] = (
        time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    )
    env["REFINERY_SUMMARY_BY_CLI"] = "1"
    from . import requeue

    smk = snakemake_argv(args, config_path, workdir, settings)
    lock = None if args.dry_run else lock_cache(workdir)
    if lock is not None:
        clear_stale_lock(smk, workdir, env)
    for round_ in range(1 + REQUEUE_ROUNDS):
        before = requeue.load(settings.paths.requeue)
        try:
            # in refinery's process group: Ctrl-C (or a signal to the group) reaches Snakemake
            # and its jobs as it does a plain `snakemake`; refinery then waits for it to clean up
            rc = proc.run(
                smk,
                env=env,
                check=False,
                capture=False,
                new_session=False,
                interrupt_grace=INTERRUPT_GRACE,
                pass_fds=[lock.fileno()] if lock else (),
            ).returncode
        except CommandError as exc:
            raise RefineryError(f"cannot start snakemake: {exc}") from exc
        after = requeue.load(settings.paths.requeue)
        if args.dry_run or after == before or round_ == REQUEUE_ROUNDS:
            break
        added = {k: v for k, v in after.items() if before.get(k) != v}
        print(
            "refinery: builds were missing Python dependencies "
            + "; ".join(f"{k} needs {', '.join(v)}" for k, v in added.items())
            + ": planning them and running again",
            file=sys.stderr,
        )
    if args.dry_run:
        return rc
    if args.prefetch or "prefetch" in args.snakemake_args:
        return rc
    manifest_path = settings.paths.manifest
    if not manifest_path.exists():
        print(f"refinery: no manifest was written (snakemake exit {rc})", file=sys.stderr)
        return rc or 1
    manifest = read_json(manifest_path)
    manifest["path"] = str(manifest_path)
    print(summary_table(manifest))
    if rc != 0 and manifest.get("run_id") != env["REFINERY_RUN_ID"]:
        print(
            f"refinery: snakemake exited {rc} before this run's manifest was written; the "
            "table above is from an earlier run; see the errors above",
            file=sys.stderr,
        )
    return 0 if (rc == 0 and manifest.get("ok")) else 1


def history_main(argv: list[str]) -> int:
    from .history import History

    p = argparse.ArgumentParser(
        prog="refinery history",
        description="Recent events, top failures and a package summary from the history database.",
    )
    p.add_argument("--cache", help="cache folder (history at CACHE/history.db)")
    p.add_argument("--db", "--history-db", dest="db", help="history database path")
    p.add_argument("--package", help="summary and events of one package")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    db = Path(args.db) if args.db else (Path(args.cache) / "history.db" if args.cache else None)
    if db is None:
        p.error("give --cache or --db")
    if not db.exists():
        raise RefineryError(f"no history database at {db}")
    from packaging.utils import canonicalize_name

    h = History(db)
    package = canonicalize_name(args.package) if args.package else None
    data: dict[str, Any] = {
        "recent": h.recent(args.limit, package),
        "top_failures": h.top_failures(args.limit),
        "status_counts": h.status_counts(),
    }
    if package:
        data["package"] = h.package_summary(package)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(
        "status counts: " + ", ".join(f"{k}={v}" for k, v in sorted(data["status_counts"].items()))
    )
    if package:
        s = data["package"]
        avg = f"{s['avg_duration']:.1f} s" if s.get("avg_duration") else "-"
        print(
            f"\n{package}: {s['events']} events, built {s['built'] or 0}, failed "
            f"{s['failed'] or 0}, average build {avg}, last status {s['last_status']}"
        )
    print("\nrecent events:")
    for e in data["recent"]:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        print(f"  {stamp}  {e['status']:<13} {e['package']} {e['version']}  {e['detail'][:100]}")
    if data["top_failures"]:
        print("\ntop failures:")
        for f in data["top_failures"]:
            print(f"  {f['failures']:>4}  {f['package']}")
    return 0


def _workflow_settings(cache: Path, output: Path | None) -> Settings:
    """Settings of the last `refinery` run that used this cache."""
    import yaml

    config_path = cache / "workflow" / "refinery-config.yaml"
    if not config_path.exists():
        raise RefineryError(f"no refinery run found in {cache} (missing {config_path})")
    conf = yaml.safe_load(config_path.read_text())
    if output is not None:
        conf["output"] = str(output.resolve())
    return Settings.from_config(conf, cache / "workflow")


def verify_main(argv: list[str]) -> int:
    from .verify import verify

    p = argparse.ArgumentParser(
        prog="refinery verify",
        description="Rebuild every built wheel "
        "of the last run from a clean folder and compare sha256; "
        "re-run the closure check and import smoke tests.",
    )
    p.add_argument("--cache", required=True)
    p.add_argument("--output", help="output folder (default: the run's)")
    p.add_argument("--no-rebuild", action="store_true", help="closure and smoke tests only")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    settings = _workflow_settings(Path(args.cache), Path(args.output) if args.output else None)
    manifest = verify(settings, rebuild=not args.no_rebuild)
    report = manifest["verify"]
    smoke_bad = [s for s in manifest["smoke"] if s.get("ok") is False]
    if args.json:
        print(
            json.dumps(
                {"verify": report, "closure": manifest["closure"], "smoke": manifest["smoke"]},
                indent=2,
            )
        )
    else:
        for r in report["results"]:
            state = {True: "reproducible", False: "NOT reproducible", None: "unknown"}
            extra = (
                f": first difference {r['first_difference']}" if r.get("first_difference") else ""
            )
            print(
                f"{r['name']} {r['version']}: {state[r['reproducible']]}{extra}"
                + (f" ({r['detail']})" if r.get("detail") else "")
            )
        print(
            f"{report['reproducible']}/{report['rebuilt']} rebuilt wheels identical; closure "
            f"{'ok' if manifest['closure']['ok'] else 'FAILED'}; smoke imports "
            f"{'ok' if not smoke_bad else 'FAILED: ' + ', '.join(s['wheel'] for s in smoke_bad)}"
        )
    bad = report["reproducible"] != report["rebuilt"] or not manifest["closure"]["ok"] or smoke_bad
    return 1 if bad else 0


def diff_main(argv: list[str]) -> int:
    from .diff import diff_manifests, load_manifest, render

    p = argparse.ArgumentParser(
        prog="refinery diff",
        description="Differences between two runs: two manifests or two output folders.",
    )
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    result = diff_manifests(load_manifest(Path(args.old)), load_manifest(Path(args.new)))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["identical"] else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "history":
            return history_main(argv[1:])
        if argv and argv[0] == "verify":
            return verify_main(argv[1:])
        if argv and argv[0] == "diff":
            return diff_main(argv[1:])
        if argv and argv[0] in ("serve", "queue", "worker"):
            # the panel, its retry queue and the worker live in their own module
            from . import panel_cli

            return panel_cli.main(argv[0], argv[1:])
        if argv and argv[0] == "run":
            argv = argv[1:]
        return run(argv)
    except RefineryError as exc:
        print(f"refinery: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refinery: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
