"""The options of `refinery run`: one table drives the parser, the REFINERY_* variables, the
help's defaults and the workflow config the options are written to.

Each option names the config key it sets (`--python` sets target.python), so its default is
read from config/config.yaml rather than repeated here, its environment variable is derived
from its name, and config_from_args needs no list of its own.

Precedence, lowest first: config/config.yaml, the config file (--config, else refinery.toml
or [tool.refinery] found from the current folder), REFINERY_* variables, the command line.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypedDict

from . import config as cfg
from .errors import ConfigError

ENV_PREFIX = "REFINERY_"
TRUE_WORDS = ("1", "true", "yes")
FALSE_WORDS = ("0", "false", "no")
#: after this, everything goes to Snakemake as is
PASSTHROUGH = "--"

EXIT_CODES = """exit codes:
  0    every package landed and the closure check passed
  1    a package failed, is missing or invalid, or the closure check failed
  2    usage, config or pre-run check error (nothing was started or written)
  130  interrupted (rerun the same command to resume)"""

PRECEDENCE = f"""where settings come from, lowest first:
  config/config.yaml (the defaults `refinery run --help` shows as "default from config")
  a config file: --config FILE, else the nearest refinery.toml, or pyproject.toml
    with a [tool.refinery] table, in the current folder or its parents (up to the
    repository root); the same keys as config/config.yaml
  {ENV_PREFIX}<OPTION> environment variables: {ENV_PREFIX}INPUT, {ENV_PREFIX}JOBS,
    {ENV_PREFIX}PLATFORM_TAG, ... (booleans: {"/".join(TRUE_WORDS)} or {"/".join(FALSE_WORDS)};
    repeatable options: space-separated values)
  the command line"""


class Parser(argparse.ArgumentParser):
    """argparse, with every mistake reported in one line that names it, and a guess at the
    option or word that was meant."""

    #: said after an unexpected word (run: where Snakemake arguments go)
    stray_hint: str = ""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"refinery: error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            self.error(self.unrecognized(extra))
        return ns

    def unrecognized(self, extra: Sequence[str]) -> str:
        """'unknown option --inptu; did you mean --input?' or 'unexpected argument seraph'."""
        first = extra[0]
        if first.startswith("-"):
            flag = first.split("=", 1)[0]
            close = difflib.get_close_matches(flag, list(self._option_string_actions), n=1)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown option {flag!r}{guess}"
        words = " ".join(repr(w) for w in extra)
        plural = "s" if len(extra) > 1 else ""
        return f"unexpected argument{plural} {words}{self.stray_hint}"


@functools.cache
def _config_defaults() -> dict[str, Any] | None:
    try:
        return cfg.defaults()
    except (OSError, ConfigError):
        return None


def config_default(key: tuple[str, ...]) -> Any:
    """The value config/config.yaml gives `key`, or None."""
    data: Any = _config_defaults()
    for part in key:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default where it comes from: config/config.yaml for options that
    set a config key ("default from config: X"), else the parser's own; nothing for switches
    and for options whose help already says it."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """One-line paragraphs wrapped; laid-out text (the epilogs) kept as written."""
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or "required" in text or action.nargs == 0:
            return text
        key = getattr(action, "config_key", ())
        if key:
            value = config_default(key)
            if value in (None, "", [], {}):
                return text
            show = getattr(action, "show_default", None) or _show
            return f"{text} (default from config: {show(value)})"
        fallback = getattr(action, "fallback_text", "")
        if fallback:
            return f"{text} (default: {fallback})"
        if action.default not in (None, False, "", [], argparse.SUPPRESS):
            return f"{text} (default: %(default)s)"
        return text


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def make_parser(prog: str, description: str = "", epilog: str = "") -> Parser:
    return Parser(prog=prog, description=description, epilog=epilog,
                  formatter_class=HelpFormatter)


@dataclass(frozen=True)
class Command:
    """A subcommand of `refinery`: its one-line summary (in `refinery --help`) and its
    description (in its own help), the options it adds to its parser, and what it does with
    its parser and the arguments after its name."""

    name: str
    summary: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.ArgumentParser, list[str]], int]
    #: the help of its `--json` switch (listed after its own options); "" for a command
    #: that prints no JSON
    json: str = ""


# converters: an option's value -> the config value it sets


def abspath(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def name_list(values: list[str]) -> list[str]:
    """Repeatable and comma-separated: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def extras_map(values: list[str]) -> dict[str, list[str]]:
    """['requests[socks]'] -> {'requests': ['socks']}."""
    from packaging.requirements import InvalidRequirement, Requirement

    extras: dict[str, list[str]] = {}
    for item in values:
        try:
            req = Requirement(item)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"--extra {item!r} is not NAME[EXTRA,...]: {reason}") from None
        extras.setdefault(req.name, []).extend(sorted(req.extras))
    return extras


def switched_on(value: str) -> bool:
    return value == "on"


def on_off(value: Any) -> str:
    """The inverse of switched_on, to show a config default as the option spells it."""
    return "on" if value else "off"


def negated(value: bool) -> bool:
    return not value


@dataclass(frozen=True)
class RunOption:
    """One option of `refinery run`: its flags and help, and the config key it sets."""

    flags: tuple[str, ...]
    help: str
    group: str
    #: where the value goes in the workflow config; () for options of the command itself
    key: tuple[str, ...] = ()
    convert: Callable[[Any], Any] | None = None
    #: type, choices, action, metavar: as argparse takes them
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: the value when neither the command line nor the environment gives one (only for
    #: options of the command itself: a config key's default lives in config/config.yaml)
    fallback: Callable[[], Any] | None = None
    fallback_text: str = ""
    required: bool = False
    #: how the config default is shown in the help, when the option spells it otherwise
    show_default: Callable[[Any], str] | None = None

    @property
    def long(self) -> str:
        return next(f for f in self.flags if f.startswith("--"))

    @property
    def dest(self) -> str:
        return self.long[2:].replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    @property
    def is_switch(self) -> bool:
        return self.kwargs.get("action") == "store_true"

    @property
    def is_list(self) -> bool:
        return self.kwargs.get("action") == "append"


def _opt(group: str, *flags: str, help: str, key: tuple[str, ...] = (), convert=None,
         fallback=None, fallback_text: str = "", required: bool = False, show_default=None,
         **kwargs: Any) -> RunOption:
    return RunOption(flags, help, group, key, convert, kwargs, fallback, fallback_text,
                     required, show_default)


class ArgAction(TypedDict):
    """An argparse `action`, spread into `_opt` (`**SWITCH`, `**LIST`)."""

    action: str


SWITCH: ArgAction = {"action": "store_true"}
LIST: ArgAction = {"action": "append"}

RUN_OPTIONS: tuple[RunOption, ...] = (
    _opt("paths", "--input", key=("input",), convert=abspath, required=True, metavar="FOLDER",
         help="folder of input wheels (required)"),
    _opt("paths", "--output", key=("output",), convert=abspath, required=True,
         metavar="FOLDER",
         help="folder for refined wheels, manifest and index (required)"),
    _opt("paths", "--cache", key=("cache",), convert=abspath, required=True, metavar="FOLDER",
         help="folder for downloads, logs, history (required)"),
    _opt("paths", "--manifest", key=("manifest",), convert=abspath, metavar="FILE",
         help="manifest path (default OUTPUT/manifest.json)"),
    _opt("paths", "--history-db", key=("history_db",), convert=abspath, metavar="FILE",
         help="SQLite history (default CACHE/history.db)"),
    _opt("paths", "--config", metavar="FILE",
         help="config file (TOML, JSON or YAML, or a pyproject.toml's [tool.refinery]) with "
         "the keys of config/config.yaml (default: the nearest refinery.toml or "
         "pyproject.toml with [tool.refinery] from the current folder)"),
    _opt("paths", "--replay", metavar="MANIFEST",
         help="rebuild the versions, variants, recipes and build-dependency versions an "
         "earlier manifest recorded"),
    _opt("target", "--python", key=("target", "python"), metavar="X.Y",
         help="target CPython version, major.minor, e.g. 3.12"),
    _opt("target", "--platform-tag", key=("target", "platform_tag"), metavar="TAG",
         help="target platform tag: manylinux2014_ARCH, manylinux_2_Y_ARCH, musllinux_X_Y_ARCH, "
         "linux_ARCH, or native for this host"),
    _opt("strategy", "--upgrade-strategy", key=("strategy", "upgrade"),
         choices=["pinned", "eager"],
         help="pinned keeps each input version; eager takes the newest version every "
         "dependent allows"),
    _opt("strategy", "--fallback-latest", key=("strategy", "fallback_latest"), **SWITCH,
         help="when the planned version has no usable file, plan the newest allowed one"),
    _opt("strategy", "--expansion-depth", key=("strategy", "expansion_depth"), type=int,
         metavar="N", help="levels of missing dependencies to plan"),
    _opt("strategy", "--skip-known-failures", key=("strategy", "skip_known_failures"),
         **SWITCH, help="skip packages whose last recorded build of that version failed"),
    _opt("strategy", "--no-binary", key=("strategy", "no_binary"), convert=name_list,
         metavar="NAME", **LIST,
         help="build NAME from source even if the index has a target wheel (:all: for every "
         "package); repeatable, comma-separated"),
    _opt("strategy", "--extra", key=("strategy", "extras"), convert=extras_map,
         metavar="NAME[EXTRA,...]", **LIST,
         help="request extras of a package, e.g. 'requests[socks]'; repeatable"),
    _opt("attempts", "--max-attempts", key=("build", "max_attempts"), type=int, metavar="N",
         help="attempts per package before it counts as failed"),
    _opt("attempts", "--attempt-timeout", key=("build", "attempt_timeout"), type=float,
         metavar="SECONDS", help="seconds per attempt"),
    _opt("attempts", "--attempt-backoff-base", key=("build", "backoff_base"), type=float,
         metavar="SECONDS", help="wait after a failed attempt, seconds; doubles per attempt"),
    _opt("attempts", "--attempt-backoff-max", key=("build", "backoff_max"), type=float,
         metavar="SECONDS", help="cap of the backoff, seconds"),
    _opt("recipes", "--allow-system-recipes", key=("recipes", "allow_system"), **SWITCH,
         help="let the local builder run recipe steps and installs on this host"),
    _opt("recipes", "--no-system-recipes", key=("recipes", "enabled"), convert=negated,
         **SWITCH, help="never apply recipes"),
    _opt("recipes", "--dry-run-recipes", key=("recipes", "dry_run"), **SWITCH,
         help="log the recipe commands, run none"),
    _opt("recipes", "--auto-apply-suggestions", key=("recipes", "auto_apply_suggestions"),
         **SWITCH, help="turn hints of a failed package into a recipe for one extra attempt"),
    _opt("builders", "--builder", key=("builder", "kind"),
         choices=["auto", "local", "container", "cross"],
         help="who compiles; auto: local for --platform-tag native, container when "
         "--container-preset/--container-image is given, local for this host's arch, else "
         "cross (zig on this host for the target, imported under qemu in the target image)"),
    _opt("builders", "--container-engine", key=("builder", "engine"),
         choices=["podman", "docker"], help="engine that runs builder containers"),
    _opt("builders", "--container-preset", key=("builder", "preset"),
         choices=["rocky", "fedora", "ubuntu", "debian"],
         help="builder image preset (containers/*), made for the target's arch"),
    _opt("builders", "--container-image", key=("builder", "image"), metavar="IMAGE",
         help="a builder image of your own"),
    _opt("builders", "--container-cpu", key=("builder", "cpu"), metavar="N",
         help="CPU limit per build container, e.g. 2"),
    _opt("builders", "--container-memory", key=("builder", "memory"), metavar="SIZE",
         help="memory limit per build container, e.g. 4g"),
    _opt("builders", "--container-network", key=("builder", "network"), convert=switched_on,
         show_default=on_off, choices=["on", "off"],
         help="on gives build containers the network; off runs them with --network none on "
         "pre-fetched files"),
    _opt("index", "--index-url", key=("index", "url"), metavar="URL",
         help="package index (PEP 503 simple API) for sdists, target wheels and "
         "dependencies"),
    _opt("index", "--extra-index-url", key=("index", "extra_urls"), metavar="URL", **LIST,
         help="further simple index, searched after the main one; repeatable"),
    _opt("index", "--trusted-host", key=("index", "trusted_hosts"), metavar="HOST", **LIST,
         help="host whose TLS certificate is not verified; repeatable"),
    _opt("execution", "--jobs", "-j", type=int, metavar="N",
         fallback=lambda: os.cpu_count() or 1, fallback_text="the number of CPUs",
         help="jobs (cores) Snakemake runs at once"),
    _opt("execution", "--schedule", key=("schedule",),
         choices=["shortest-first", "fifo", "longest-first"],
         help="build order by observed duration: shortest-first (most packages early), "
         "longest-first (whole set soonest), or fifo (input order)"),
    _opt("execution", "--profile", metavar="NAME", fallback=lambda: "default",
         fallback_text="default",
         help="Snakemake workflow profile: a name under profiles/ or a folder"),
    _opt("execution", "--dry-run", "-n", **SWITCH, help="show the jobs, run nothing"),
    _opt("execution", "--prefetch", **SWITCH,
         help="warm-up: plan, then download every sdist to build (CACHE/downloads) and its "
         "build requirements as wheels (CACHE/buildenv); build nothing (the workflow's "
         "`prefetch` target)"),
    _opt("execution", "--rebuild", metavar="NAME", **LIST,
         help="rebuild NAME even if its wheel is up to date; repeatable"),
    _opt("execution", "--no-closure-check", key=("closure_check",), convert=negated,
         **SWITCH,
         help="skip the offline pip check that every output package installs for the target"),
    _opt("execution", "--verbose", "-v", key=("verbose",), **SWITCH,
         help="debug logging in every step, Snakemake's full output, and the config file "
         "read"),
)
BY_DEST = {o.dest: o for o in RUN_OPTIONS}
GROUPS = ("paths", "target", "strategy", "attempts", "recipes", "builders", "index",
          "execution")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Every run option, in its group; each defaults to None, so a value means "given"."""
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    for opt in RUN_OPTIONS:
        action = groups[opt.group].add_argument(
            *opt.flags, dest=opt.dest, default=None, help=opt.help, **opt.kwargs
        )
        # HelpFormatter reads these back with getattr: argparse.Action declares no such fields
        action.config_key = opt.key  # type: ignore[attr-defined]
        action.fallback_text = opt.fallback_text  # type: ignore[attr-defined]
        action.show_default = opt.show_default  # type: ignore[attr-defined]
    # Snakemake's arguments are not an argparse positional: split_passthrough takes them
    # from after `--`, so a positional here would swallow stray words
    if isinstance(parser, Parser):
        parser.stray_hint = "; Snakemake options and targets go after --"


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(refinery's arguments, Snakemake's): Snakemake gets only what follows `--`, so a
    stray word is an error rather than a Snakemake target."""
    argv = list(argv)
    if PASSTHROUGH in argv:
        at = argv.index(PASSTHROUGH)
        return argv[:at], argv[at + 1:]
    return argv, []


def env_value(opt: RunOption, raw: str) -> Any:
    """A REFINERY_* variable's text as the option's value; ConfigError naming the variable."""
    text = raw.strip()
    if opt.is_switch:
        word = text.lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise ConfigError(
            f"{opt.env}={raw!r}: give {'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}"
        )
    items = text.split() if opt.is_list else [text]
    convert = opt.kwargs.get("type", str)
    values = []
    for item in items:
        try:
            value = convert(item)
        except ValueError:
            raise ConfigError(f"{opt.env}={raw!r}: not a valid {convert.__name__}") from None
        choices = opt.kwargs.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{opt.env}={raw!r}: choose from {', '.join(choices)}")
        values.append(value)
    return values if opt.is_list else values[0]


def apply_env(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """Fill the options the command line left unset from REFINERY_* variables (an empty one
    counts as unset), then the fallbacks. Returns where each given value came from: the
    option's flag or the variable's name, for messages and the run's record."""
    sources: dict[str, str] = {}
    for opt in RUN_OPTIONS:
        if getattr(args, opt.dest) is not None:
            sources[opt.dest] = opt.long
            continue
        raw = environ.get(opt.env, "")
        if raw.strip():
            setattr(args, opt.dest, env_value(opt, raw))
            sources[opt.dest] = opt.env
        elif opt.fallback is not None:
            setattr(args, opt.dest, opt.fallback())
    return sources


def missing_required(args: argparse.Namespace) -> list[RunOption]:
    return [o for o in RUN_OPTIONS if o.required and getattr(args, o.dest) is None]


def _put(tree: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for part in key[:-1]:
        tree = tree.setdefault(part, {})
    tree[key[-1]] = value


def flag_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the given options set (from the command line or the environment)."""
    out: dict[str, Any] = {}
    for opt in RUN_OPTIONS:
        value = getattr(args, opt.dest, None)
        if opt.key and value is not None:
            _put(out, opt.key, opt.convert(value) if opt.convert else value)
    return out
