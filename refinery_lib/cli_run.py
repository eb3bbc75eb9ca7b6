"""`refinery run`: options -> checks -> the cache's lock -> Snakemake config -> the workflow.

The order is the point: everything that can refuse a run (options, config, target, paths,
write probes, a busy cache) does so before anything is written, so a refused run leaves the
user's folders exactly as they were and another run's files untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import config as cfg
from . import progress
from .cli_config import ConfigSource, find_config
from .cli_options import (
    BY_DEST,
    EXIT_CODES,
    PRECEDENCE,
    Parser,
    add_run_options,
    apply_env,
    flag_config,
    make_parser,
    missing_required,
    split_passthrough,
)
from .errors import ConfigError, RefineryError
from .prechecks import RunPaths, check_paths, check_target
from .run_id import RUN_ID_ENV, new_run_id
from .settings import Settings, WorkflowFiles

RESULTS = "results"
#: extra workflow runs when failed builds reveal missing Python dependencies
REQUEUE_ROUNDS = 2
#: seconds Snakemake gets after Ctrl-C to end its jobs (and cancel cluster jobs) and unlock
INTERRUPT_GRACE = 300
#: the run's full config, in CACHE/workflow; it may hold index credentials: mode 0600
CONFIG_NAME = "refinery-config.yaml"

DESCRIPTION = (
    "Refine a wheelhouse for any platform into wheels for the target. Arguments after -- go "
    "to Snakemake as they are (options, or a target such as prefetch)."
)


def refinery_version() -> str:
    """The installed distribution's version (the package's own when run from a bare tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s390x-wheel-refinery")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def configure(parser: argparse.ArgumentParser) -> None:
    """The run options, on the `run` subcommand's parser or a parser of its own."""
    parser.description = DESCRIPTION
    parser.epilog = f"{EXIT_CODES}\n\n{PRECEDENCE}"
    add_run_options(parser)


def run_parser(prog: str = "refinery run") -> Parser:
    parser = make_parser(prog)
    configure(parser)
    return parser


@dataclass(frozen=True)
class RunRequest:
    """What was asked: the options (command line over REFINERY_*), where each came from,
    the config file chosen and Snakemake's own arguments."""

    args: argparse.Namespace
    sources: Mapping[str, str]
    config: ConfigSource | None
    snakemake_args: tuple[str, ...]


def parse_run(
    argv: Sequence[str],
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    parser: argparse.ArgumentParser | None = None,
) -> RunRequest:
    """Parse a run's arguments; a usage mistake exits 2 with one line (argparse's exit)."""
    parser = parser or run_parser()
    ours, theirs = split_passthrough(argv)
    args = parser.parse_args(ours)
    try:
        sources = apply_env(args, os.environ if environ is None else environ)
    except ConfigError as exc:
        parser.error(str(exc))
    missing = missing_required(args)
    if missing:
        parser.error(
            "the following options are required: "
            + ", ".join(f"{o.long} (or {o.env})" for o in missing)
        )
    args.snakemake_args = list(theirs)
    config = find_config(args.config, sources.get("config", "--config"), cwd or Path.cwd())
    return RunRequest(args, sources, config, tuple(theirs))


def target_labels(sources: Mapping[str, str], config: ConfigSource | None) -> dict[str, str]:
    """How --python and --platform-tag are named in messages: the flag or variable that
    gave them, else their key in the config file."""
    where = f" in {config.path}" if config else ""
    return {
        dest: sources.get(dest) or f"target.{dest}{where}" for dest in ("python", "platform_tag")
    }


def config_from_args(
    args: argparse.Namespace,
    config: ConfigSource | None = None,
    sources: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """config/config.yaml < config file < --replay's pins < options, target checked, then
    validated against the workflow's schema."""
    conf = cfg.defaults()
    if config is not None:
        conf = cfg.merge(conf, config.load())
    if args.replay:
        from .diff import load_manifest
        from .verify import replay_overrides

        conf = cfg.merge(conf, {"overrides": replay_overrides(load_manifest(Path(args.replay)))})
    conf = cfg.merge(conf, flag_config(args))
    check_target(conf, target_labels(sources or {}, config))
    cfg.validate(conf)
    return conf


def resolve_profile(name: str) -> Path:
    """A Snakemake workflow profile: a folder, or a name under the workflow's profiles/."""
    profile = Path(name)
    if profile.is_dir():
        return profile.resolve()
    profiles = cfg.workflow_dir() / "profiles"
    if not (profiles / name).is_dir():
        found = ", ".join(sorted(p.name for p in profiles.iterdir() if p.is_dir()))
        raise ConfigError(f"--profile {name}: no such folder, nor a profile of {profiles} "
                          f"({found})")
    return profiles / name


@dataclass(frozen=True)
class RunPlan:
    """A checked run: nothing of it is written yet."""

    request: RunRequest
    conf: dict[str, Any]
    settings: Settings
    workdir: Path
    profile: Path

    @property
    def args(self) -> argparse.Namespace:
        return self.request.args


def path_labels(sources: Mapping[str, str]) -> dict[str, str]:
    return {dest: sources.get(dest, BY_DEST[dest].long) for dest in
            ("input", "output", "cache", "manifest", "history_db")}


def prepare(request: RunRequest) -> RunPlan:
    """Every check a run must pass, in the order of what they need; reads only."""
    conf = config_from_args(request.args, request.config, request.sources)
    # refinery keeps the per-step records in CACHE/workflow/results
    conf["results"] = RESULTS
    workdir = Path(conf["cache"]) / "workflow"
    # results are relative to the working directory, so the cache holds them
    settings = Settings.from_config(conf, workdir)
    profile = resolve_profile(request.args.profile)
    check_paths(RunPaths.of(settings.paths), path_labels(request.sources))
    return RunPlan(request, conf, settings, workdir, profile)


def snakemake_argv(
    args: argparse.Namespace, config_path: Path, workdir: Path, profile: Path,
    forced: Sequence[str] = (),
) -> list[str]:
    wf = cfg.workflow_dir()
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
    # before the options that follow: --quiet takes a list, which would swallow targets
    argv[3:3] = progress.snakemake_output_args(args.verbose)
    if args.dry_run:
        argv.append("--dry-run")
    argv += list(args.snakemake_args)
    if args.prefetch:
        argv.append("prefetch")
    if forced:
        argv += ["--forcerun", *forced]
    return argv


def _prepare_image(settings: Settings) -> None:
    """Build the debian builder image on first use, with its progress on the terminal."""
    from .container_images import ensure_image

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
    """Build targets of `names` in the current plan; their cached wheels are forgotten
    (call only while holding the cache's lock: it deletes records)."""
    from packaging.utils import canonicalize_name

    from .models import Action, Plan

    wanted = {canonicalize_name(n) for n in names}
    if not wanted or not settings.paths.plan.exists():
        return []
    # relative to Snakemake's working directory, as the rule's output pattern is
    rule_files = WorkflowFiles(Path(RESULTS))
    targets = []
    for node in Plan.from_file(settings.paths.plan).nodes(Action.BUILD):
        if node.name in wanted:
            targets.append(str(rule_files.outcome(node.key)))
            records = settings.paths.wheel_records
            for rec in records.glob(f"{node.key}-*.json") if records.is_dir() else []:
                rec.unlink()
    return targets


def lock_cache(workdir: Path) -> IO[str]:
    """One run per cache: an exclusive flock on CACHE/workflow/.refinery.lock, or RefineryError.

    The kernel drops it when the last process holding the file dies, even by SIGKILL; Snakemake
    inherits it (pass_fds), so while it is free no Snakemake works in this folder and a lock of
    Snakemake's there is stale. Returns the open file: keep it open for the whole run.
    """
    from .files import lock_file

    fh = lock_file(workdir / ".refinery.lock", wait=False)
    if fh is None:
        raise RefineryError(
            f"another refinery run is using {workdir.parent}; wait for it to finish or stop it"
        )
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


def config_header(request: RunRequest) -> str:
    """The comment atop refinery-config.yaml: which file and variables the run read (names
    only: the values follow, and a variable may hold a credential)."""
    found = request.config.describe() if request.config else "none given or found"
    env = sorted(v for v in request.sources.values() if not v.startswith("-"))
    lines = [
        f"# written by refinery {refinery_version()}: config/config.yaml < config file < "
        "environment < command line",
        f"# config file: {found}",
        f"# from the environment: {', '.join(env) or 'nothing'}",
    ]
    return "\n".join(lines) + "\n"


def _readable_json(path: Path) -> bool:
    """False only for a file that exists and is not a JSON object (a missing one is fine)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return isinstance(json.load(fh), dict)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False


def forget_stale_records(settings: Settings) -> list[str]:
    """Records in the cache that must not stand for this run: a plan made while the index
    did not answer, a damaged history database (set aside), a damaged manifest (derived:
    made again), the mark of an aggregation whose output no longer matches its manifest (a
    wheel deleted or changed: the aggregation places it again), and of one whose manifest
    is gone (the manifest is not a Snakemake output: Snakemake removes the empty folder of a
    missing output after a failed run, and that folder is the user's)."""
    from .aggregate import output_mismatch
    from .history import set_aside_if_damaged
    from .steps import forget_unreachable_plan

    notes = []
    if note := forget_unreachable_plan(settings.paths.plan):
        notes.append(note)
    if note := set_aside_if_damaged(settings.paths.history_db):
        notes.append(note)
    if note := output_mismatch(settings.paths.manifest, settings.paths.output):
        notes.append(note)
    if not _readable_json(settings.paths.manifest):
        notes.append(f"{settings.paths.manifest} is not a manifest (damaged?): it is made again")
        settings.paths.manifest.unlink()
    # Snakemake remakes a missing intermediate only when something downstream is wanted
    if notes or not settings.paths.manifest.exists():
        settings.paths.complete.unlink(missing_ok=True)
    return notes


def execute(plan: RunPlan) -> int:
    """Lock the cache, then (and only then) write the run's config and run Snakemake."""
    import yaml

    from . import missing_deps
    from .aggregate import summary_table
    from .errors import CommandError
    from .files import atomic_write_text, read_json

    args, settings, workdir = plan.args, plan.settings, plan.workdir
    if args.verbose:
        found = plan.request.config.describe() if plan.request.config else "none"
        print(f"refinery: config file: {found}", file=sys.stderr)
    workdir.mkdir(parents=True, exist_ok=True)
    lock = lock_cache(workdir)
    try:
        settings.paths.output.mkdir(parents=True, exist_ok=True)
        config_path = workdir / CONFIG_NAME
        text = config_header(plan.request) + yaml.safe_dump(plan.conf, sort_keys=True)
        atomic_write_text(config_path, text, mode=0o600)
        if settings.container is not None and not args.dry_run:
            _prepare_image(settings)
        env = dict(os.environ)
        env[RUN_ID_ENV] = new_run_id()
        env["REFINERY_SUMMARY_BY_CLI"] = "1"
        for note in forget_stale_records(settings):
            print(f"refinery: {note}", file=sys.stderr)
        forced = forced_targets(settings, args.rebuild or [])
        smk = snakemake_argv(args, config_path, workdir, plan.profile, forced)
        if not args.dry_run:
            clear_stale_lock(smk, workdir, env)
        for round_ in range(1 + REQUEUE_ROUNDS):
            before = missing_deps.load(settings.paths.missing_deps)
            try:
                # in a process group of its own, under a supervisor: SIGINT, SIGTERM or
                # SIGHUP to refinery (Ctrl-C, or a kill of this pid alone) is passed on to
                # Snakemake and its jobs once, as SIGINT, and refinery waits for them to
                # clean up; if refinery dies, even by SIGKILL, the supervisor does the same
                rc = progress.run_workflow(
                    smk, env, settings, verbose=args.verbose, forward_signals=True,
                    interrupt_grace=INTERRUPT_GRACE, pass_fds=[lock.fileno()],
                )
            except CommandError as exc:
                raise RefineryError(f"cannot start snakemake: {exc}") from exc
            after = missing_deps.load(settings.paths.missing_deps)
            if args.dry_run or after == before or round_ == REQUEUE_ROUNDS:
                break
            added = {k: v for k, v in after.items() if before.get(k) != v}
            print(
                "refinery: builds were missing Python dependencies "
                + "; ".join(f"{k} needs {', '.join(v)}" for k, v in added.items())
                + ": planning them and running again",
                file=sys.stderr,
            )
    finally:
        lock.close()
    if args.dry_run or args.prefetch or "prefetch" in args.snakemake_args:
        return rc
    manifest_path = settings.paths.manifest
    if not manifest_path.exists():
        print(f"refinery: no manifest was written (snakemake exit {rc})", file=sys.stderr)
        return rc or 1
    manifest = read_json(manifest_path)
    manifest["path"] = str(manifest_path)
    print(summary_table(manifest))
    if rc != 0 and manifest.get("run_id") != env[RUN_ID_ENV]:
        print(
            f"refinery: snakemake exited {rc} before this run's manifest was written; the "
            "table above is from an earlier run; see the errors above",
            file=sys.stderr,
        )
    return 0 if (rc == 0 and manifest.get("ok")) else 1


def run(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """A whole run from its arguments (no subcommand word): the `run` command, and the
    worker's entry point. Raises RefineryError; a usage mistake exits 2 (SystemExit)."""
    return execute(prepare(parse_run(argv, environ)))
