"""`refinery serve | queue | worker`: the web panel, the retry queue's length, the worker.

The one module of refinery_lib that imports `web` (tests/unit/test_import_graph.py): `serve`
builds the panel and hands it the run function; `web` is imported in the commands that need
it, since the web extra may not be installed. As in cli_tools, each command is a
`configure(parser)` and a `main(parser, argv)`, with the rest of its help in its `Command`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import cli_run
from .cli_options import Command
from .errors import RefineryError
from .retry_queue import QUEUE_FILE, RetryQueue


def _queue_path(cache: str | None, queue_path: str | None) -> Path:
    if queue_path:
        return Path(queue_path)
    if cache:
        return Path(cache) / QUEUE_FILE
    raise RefineryError("give --cache or --queue-path")


def configure_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=os.environ.get("HISTORY_DB"),
                   help="history database (default: $HISTORY_DB, else CACHE/history.db)")
    p.add_argument("--cache", help="cache folder: history, logs and queue inside it")
    p.add_argument("--queue-path", help="retry queue file (default: beside the database)")
    p.add_argument("--allow-missing-db", action="store_true",
                   help="serve even if the history database does not exist yet (a fresh "
                        "cache: the panel fills once the first run writes it)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default loopback; another one needs "
                        "WORKER_TOKEN, or --insecure-no-token)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug", "trace"],
                   help="uvicorn's log level")
    p.add_argument("--insecure-no-token", action="store_true",
                   help="listen beyond loopback without WORKER_TOKEN: anyone reaching the "
                        "port can queue recipes and start the worker")


def check_history(db: Path) -> None:
    """A damaged history database (PRAGMA quick_check, read-only) is refused in one line
    that names it, the cause and what to do; the panel never moves or changes it (a run sets
    it aside). Busy or locked is not damage: the panel serves and says so per request."""
    import sqlite3

    from web.store import damaged_message

    from .history import damage

    try:
        problem = damage(db)
    except sqlite3.OperationalError:
        return
    if problem:
        raise RefineryError(damaged_message(db, problem))


def serve(p: argparse.ArgumentParser, argv: list[str]) -> int:
    args = p.parse_args(argv)
    db = args.db or (str(Path(args.cache) / "history.db") if args.cache else None)
    if not db:
        p.error("give --db, --cache or HISTORY_DB")
    if not args.allow_missing_db and not Path(db).is_file():
        # a mistyped path would otherwise serve an empty panel as if nothing had run
        raise RefineryError(
            f"no history database at {db}; check the path, or pass --allow-missing-db to "
            "serve before the first run"
        )
    from dataclasses import replace

    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise RefineryError(
            f"the panel needs the web extra ({exc.name} is missing): "
            "pip install 's390x-wheel-refinery[web]'") from None
    from web.security import bind_problem, is_loopback
    from web.settings import PanelSettings

    check_history(Path(db))

    settings = PanelSettings.from_env(db=db, queue_path=args.queue_path)
    insecure = args.insecure_no_token or settings.insecure_no_token
    problem = bind_problem(args.host, settings.token, insecure)
    if problem:
        # one line, before anything listens: a refused setup never serves a single request
        print(f"refinery serve: {problem}", file=sys.stderr)
        return 2
    settings = replace(settings, insecure_no_token=insecure)
    from web.app import create_app

    if not settings.token and not is_loopback(args.host):
        print(f"refinery serve: warning: listening on {args.host} without WORKER_TOKEN; "
              "anyone who reaches the port can queue rebuilds", file=sys.stderr)
    print(f"refinery serve: http://{args.host}:{args.port}/ (history {settings.db_path}, "
          f"worker: {settings.worker_mode})", file=sys.stderr)
    # the panel's worker runs the workflow through the run function it is handed: the panel
    # imports the domain, never this command line
    app = create_app(settings, run=cli_run.run)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


SERVE = Command("serve", "the web panel",
                "The web panel: history, charts, hints, logs (live), retry queue. Worker trigger "
                "and auth come from WORKER_* environment variables (see docs/panel.md).",
                configure_serve, serve)


def configure_queue(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", help="cache folder (queue at CACHE/retry_queue.json)")
    p.add_argument("--queue-path", help="queue file, instead of the one in --cache")


def queue(p: argparse.ArgumentParser, argv: list[str]) -> int:
    args = p.parse_args(argv)
    q = RetryQueue(_queue_path(args.cache, args.queue_path))
    items = q.requests()
    if args.json:
        print(json.dumps({"path": str(q.path), "length": len(items),
                          "requests": [r.to_json() for r in items],
                          "dead": [d.to_json() for d in q.dead()]}, indent=2))
    else:
        print(len(items))
    return 0


QUEUE = Command("queue", "the retry queue's length",
                "Print the retry queue's length (dead letters, the requests the worker could not "
                "run, are not counted).",
                configure_queue, queue, json="length and requests as JSON")


def configure_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, help="folder of input wheels, as for the run")
    p.add_argument("--output", required=True, help="output folder, as for the run")
    p.add_argument("--cache", required=True, help="cache folder, as for the run")
    for flag, what in (("--python", "target CPython version"), ("--platform-tag", "platform tag")):
        p.add_argument(flag, default="",
                       help=f"{what} for requests without one (default: the run's, from its "
                       "config)")
    p.add_argument("--config", help="your config file; the queued recipes are laid over it")
    p.add_argument("--queue-path", help="queue file (default CACHE/retry_queue.json)")
    p.add_argument("--history-db", help="history database (default CACHE/history.db)")


def worker(p: argparse.ArgumentParser, argv: list[str]) -> int:
    from .cli_options import split_passthrough
    from .retry_worker import WorkerConfig, drain_and_run

    args, rest = p.parse_known_args(argv)
    # the run options are checked before the queue is drained: a mistyped one would
    # otherwise set every drained request aside as a run that did not start
    cli_run.run_parser().parse_args(split_passthrough(rest)[0])
    cfg = WorkerConfig(
        input=Path(args.input), output=Path(args.output), cache=Path(args.cache),
        python=args.python, platform_tag=args.platform_tag,
        config=Path(args.config) if args.config else None,
        queue_path=Path(args.queue_path) if args.queue_path else None,
        history_db=Path(args.history_db) if args.history_db else None,
        extra_args=tuple(rest),
    )
    result = drain_and_run(cfg, cli_run.run)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif result.status != "empty":
        print(f"refinery worker: {result.status}: {len(result.requests)} request(s), "
              f"{len(result.runs)} run(s){': ' + result.error if result.error else ''}")
    return 1 if result.status == "busy" else result.returncode


WORKER = Command("worker", "drain the retry queue and rebuild what it holds",
                 "Drain the retry queue and rebuild the queued packages with their recipes. Other "
                 "options (--index-url, --jobs, ...) go to the run as `refinery run` takes them.",
                 configure_worker, worker, json="print what was done as JSON")

#: the commands of this module, in the order `refinery --help` lists them
COMMANDS = (SERVE, QUEUE, WORKER)
