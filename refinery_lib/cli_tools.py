"""`refinery history | verify | diff`: reading what runs left behind.

Each command is a `configure(parser)` that adds its own options to its subcommand parser and a
`main(parser, argv)` that parses and acts; its summary, description and `--json` switch are
in its `Command` (COMMANDS, which `refinery --help` lists).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .cli_options import Command
from .errors import RefineryError
from .settings import Settings


def configure_history(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", help="cache folder (history at CACHE/history.db)")
    p.add_argument("--db", "--history-db", dest="db", help="history database path")
    p.add_argument("--package", help="summary and events of one package")
    p.add_argument("--limit", type=int, default=20, help="events and failures to list")


def history_main(p: argparse.ArgumentParser, argv: list[str]) -> int:
    from packaging.utils import canonicalize_name

    from .history import History

    args = p.parse_args(argv)
    db = Path(args.db) if args.db else (Path(args.cache) / "history.db" if args.cache else None)
    if db is None:
        p.error("give --cache or --db")
    if not db.is_file():
        raise RefineryError(f"no history database at {db}")
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


HISTORY = Command("history", "recent events and failures from the history database",
                  "Recent events, top failures and a package summary from the history database.",
                  configure_history, history_main, json="print it all as JSON")


def workflow_settings(cache: Path, output: Path | None) -> Settings:
    """Settings of the last `refinery` run that used this cache."""
    import yaml

    from .cli_run import CONFIG_NAME

    config_path = cache / "workflow" / CONFIG_NAME
    if not config_path.exists():
        raise RefineryError(f"no refinery run found in {cache} (missing {config_path})")
    conf = yaml.safe_load(config_path.read_text())
    if output is not None:
        conf["output"] = str(output.resolve())
    return Settings.from_config(conf, cache / "workflow")


def configure_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", required=True, help="cache folder of the run to verify")
    p.add_argument("--output", help="output folder (default: the run's)")
    p.add_argument("--no-rebuild", action="store_true", help="closure and smoke tests only")


def verify_main(p: argparse.ArgumentParser, argv: list[str]) -> int:
    from .verify import verify

    args = p.parse_args(argv)
    settings = workflow_settings(Path(args.cache), Path(args.output) if args.output else None)
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


VERIFY = Command("verify", "rebuild the last run's wheels and compare them",
                 "Rebuild every built wheel of the last run from a clean folder and compare "
                 "sha256; re-run the closure check and import smoke tests. Exit 1 if anything "
                 "differs or fails.",
                 configure_verify, verify_main, json="print the report as JSON")


def configure_diff(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", help="the earlier run: a manifest.json or an output folder")
    p.add_argument("new", help="the later run: a manifest.json or an output folder")


def diff_main(p: argparse.ArgumentParser, argv: list[str]) -> int:
    from .diff import diff_manifests, load_manifest, render

    args = p.parse_args(argv)
    result = diff_manifests(load_manifest(Path(args.old)), load_manifest(Path(args.new)))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0 if result["identical"] else 1


DIFF = Command("diff", "differences between two runs",
               "Differences between two runs: two manifests or two output folders. Exit 0 if they "
               "are identical, 1 if not.",
               configure_diff, diff_main, json="print the differences as JSON")

#: the commands of this module, in the order `refinery --help` lists them
COMMANDS = (HISTORY, VERIFY, DIFF)
