"""`refinery`: the command line. Subcommands: run (the default), demo, history, verify, diff,
serve, queue, worker.

This module holds only the top level: which command, `--version`, help, and turning errors
into exit codes. The run lives in cli_run (its options in cli_options), the tools reading a
run's results in cli_tools, the panel's commands in panel_cli; each command's `Command` (its
summary, description and options) stands next to its code.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from . import cli_run, cli_tools, panel_cli
from .cli_options import EXIT_CODES, PRECEDENCE, Command, Parser, make_parser
from .cli_run import config_from_args, refinery_version, run  # noqa: F401 - the API
from .errors import RefineryError

DEMO_DEST = "refinery-demo"


def _run_main(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    return cli_run.execute(cli_run.prepare(cli_run.parse_run(argv, parser=parser)))


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.epilog = EXIT_CODES
    p.add_argument("dest", metavar="DEST", nargs="?", default=f"./{DEMO_DEST}",
                   help="folder for the demo's output and cache")
    p.add_argument("run_options", metavar="RUN_OPTION", nargs="*",
                   help="any `refinery run` option, e.g. --jobs 2 or --verbose")


def _demo_main(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    # DEST, if given, comes first; everything after it is for the run, which checks it
    ours, _ = cli_run.split_passthrough(argv)
    if {"-h", "--help"} & set(ours):
        parser.print_help()
        return 0
    if argv and not argv[0].startswith("-"):
        dest, extra = argv[0], argv[1:]
    else:
        dest, extra = f"./{DEMO_DEST}", argv
    from .demo import demo_argv

    return cli_run.run(demo_argv(Path(dest), list(extra)))


COMMANDS: tuple[Command, ...] = (
    Command("run", "refine a wheelhouse (the default: `refinery --input ...` runs it)",
            cli_run.DESCRIPTION, cli_run.configure, _run_main),
    Command("demo", "run the bundled example into DEST",
            "Run the bundled example (a pure wheel and a C extension built for s390x, refined "
            "for this machine, offline): everything is written under DEST (DEST/output, "
            "DEST/cache).",
            _configure_demo, _demo_main),
    *cli_tools.COMMANDS,
    *panel_cli.COMMANDS,
)
BY_NAME = {c.name: c for c in COMMANDS}


def build_parser() -> tuple[Parser, dict[str, argparse.ArgumentParser]]:
    """The `refinery` parser and its subcommand parsers, by name."""
    top = make_parser(
        "refinery",
        description="Refine a wheelhouse built for any platform into a coherent set of wheels "
        "for the target (CPython on manylinux2014_s390x unless told otherwise). Without a "
        "command, the options are those of `refinery run`.",
        epilog=f"{EXIT_CODES}\n\n{PRECEDENCE}\n\n`refinery COMMAND --help` shows a command's "
        "options.",
    )
    top.usage = "refinery [--version] [--help] COMMAND [options] | refinery --input ... (run)"
    top.add_argument("--version", "-V", action="version",
                     version=f"refinery {refinery_version()}",
                     help="print the version and exit")
    subs = top.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for command in COMMANDS:
        sub = subs.add_parser(command.name, help=command.summary, prog=f"refinery {command.name}",
                              description=command.description,
                              formatter_class=top.formatter_class)
        command.configure(sub)
        if command.json:
            sub.add_argument("--json", action="store_true", help=command.json)
        parsers[command.name] = sub
    return top, parsers


def _run_parser() -> Parser:
    """The run's options on a parser of their own: `refinery run --help` without the top level."""
    return cli_run.run_parser("refinery")


def unknown_command(word: str) -> str:
    close = difflib.get_close_matches(word, list(BY_NAME), n=1)
    if close:
        return f"unknown command {word!r}; did you mean {close[0]!r}?"
    return f"unknown command {word!r}; commands: {', '.join(BY_NAME)}"


def dispatch(argv: list[str]) -> int:
    """Which command: a command's name first, else an option (a run: `refinery --input ...`),
    `--version` or `--help`; a word that names no command is an error, never a run."""
    top, parsers = build_parser()
    if not argv:
        top.print_help(sys.stderr)
        return 2
    head = argv[0]
    if head in ("-h", "--help", "-V", "--version"):
        top.parse_args(argv[:1])
        return 0
    if head in BY_NAME:
        name, rest = head, argv[1:]
    elif head.startswith("-"):
        name, rest = "run", argv
    else:
        top.error(unknown_command(head))
    return BY_NAME[name].main(parsers[name], rest)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(argv)
    except RefineryError as exc:
        print(f"refinery: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # Ctrl-C, or SIGTERM/SIGHUP passed on to Snakemake (proc.Interrupted): 128 + signal
        print("refinery: interrupted; rerun the same command to resume", file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)
    except SystemExit as exc:
        # argparse's exits (--help, --version, usage errors) as return values, so callers
        # in this process (the demo, tests) get the code too
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
