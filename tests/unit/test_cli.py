"""The `refinery` command line: subcommands, --version, help, stray words, REFINERY_*
variables and config discovery. In-process: nothing here starts Snakemake."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import version
from pathlib import Path

import pytest

from refinery_lib import cli
from refinery_lib.retry_queue import RetryQueue, RetryRequest

# the modules below are imported in the tests that use them, so that on a tree without them
# the tests of `refinery` itself (cli.main) still run and fail on what they check

COMMANDS = {"run", "demo", "history", "verify", "diff", "serve", "queue", "worker"}


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture
def folders(tmp_path: Path) -> list[str]:
    """--input (with one file), --output, --cache under tmp_path: the required options."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-1.0-py3-none-any.whl").write_bytes(b"")
    return ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache")]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository root (it holds .git), so config discovery stops inside tmp_path."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    return root


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"refinery {version('s390x-wheel-refinery')}"


def test_no_arguments_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "usage: refinery" in err
    for name in COMMANDS:
        assert name in err


def test_every_subcommand_has_a_parser():
    _, parsers = cli.build_parser()
    assert set(parsers) == COMMANDS
    assert {c.name for c in cli.COMMANDS} == COMMANDS


@pytest.mark.parametrize(
    ("word", "says"),
    [
        ("histroy", "unknown command 'histroy'; did you mean 'history'?"),
        ("serv", "unknown command 'serv'; did you mean 'serve'?"),
        ("seraph", "unknown command 'seraph'; commands: run, demo,"),
    ],
)
def test_unknown_command(word, says, capsys):
    assert cli.main([word, "--cache", "/nowhere"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"refinery: error: {says}")


def test_stray_word_is_an_error_not_a_snakemake_target(folders, capsys):
    from refinery_lib import cli_run

    with pytest.raises(SystemExit) as exc:
        cli_run.parse_run([*folders, "seraph"], environ={})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("refinery: error: unexpected argument 'seraph'")
    assert "after --" in err


def test_snakemake_arguments_only_after_double_dash(folders):
    from refinery_lib import cli_run

    req = cli_run.parse_run([*folders, "--jobs", "2", "--", "prefetch", "--keep-going"],
                            environ={})
    assert req.args.snakemake_args == ["prefetch", "--keep-going"]
    assert req.args.jobs == 2


def test_near_miss_option_did_you_mean(folders, capsys):
    assert cli.main([*folders, "--platfrom-tag", "native"]) == 2
    assert last_line(capsys.readouterr().err).startswith(
        "refinery: error: unknown option '--platfrom-tag'; did you mean '--platform-tag'?"
    )


def test_run_without_subcommand_is_run(folders, monkeypatch):
    """`refinery --input ...` (the README's form) and `refinery run --input ...` are one."""
    from refinery_lib import cli_run

    seen = []
    monkeypatch.setattr(cli_run, "execute", lambda plan: seen.append(plan) or 0)
    monkeypatch.setattr(cli_run, "prepare", lambda req: req)
    assert cli.main([*folders, "--jobs", "3"]) == 0
    assert cli.main(["run", *folders, "--jobs", "3"]) == 0
    assert [r.args.jobs for r in seen] == [3, 3]
    assert seen[0].args.input == seen[1].args.input


def test_required_options_name_their_variables(capsys):
    assert cli.main(["run", "--jobs", "2"]) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith("refinery: error: the following options are required: --input")
    assert "REFINERY_INPUT" in line and "REFINERY_CACHE" in line


def _all_parsers() -> list[argparse.ArgumentParser]:
    top, parsers = cli.build_parser()
    return [top, *parsers.values(), cli._run_parser()]


def test_every_option_has_help():
    for parser in _all_parsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), (parser.prog, action.option_strings,
                                                         action.dest)


def test_help_shows_every_option_and_where_defaults_come_from():
    from refinery_lib import cli_run

    for parser in _all_parsers():
        text = parser.format_help()
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, (parser.prog, flag)
        assert "(default: None)" not in text
    run_help = " ".join(cli_run.run_parser().format_help().split())
    assert "(default from config: 3.11)" in run_help  # --python, read from config.yaml
    assert "(default from config: manylinux2014_s390x)" in run_help
    assert "(default: the number of CPUs)" in run_help


def test_run_help_epilog_lists_exit_codes_and_precedence(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {code}" in out
    assert "REFINERY_<OPTION>" in out and "refinery.toml" in out and "[tool.refinery]" in out


def test_every_run_option_has_a_variable():
    from refinery_lib import cli_options

    names = {o.env for o in cli_options.RUN_OPTIONS}
    for env in ("REFINERY_INPUT", "REFINERY_JOBS", "REFINERY_PLATFORM_TAG",
                "REFINERY_INDEX_URL", "REFINERY_CONFIG"):
        assert env in names


def test_environment_gives_options(folders, tmp_path):
    from refinery_lib import cli_run

    env = {"REFINERY_JOBS": "3", "REFINERY_PLATFORM_TAG": "native",
           "REFINERY_INDEX_URL": "https://example.invalid/simple",
           "REFINERY_EXTRA_INDEX_URL": "https://a.invalid/simple https://b.invalid/simple",
           "REFINERY_FALLBACK_LATEST": "yes", "REFINERY_NO_CLOSURE_CHECK": "TRUE",
           "REFINERY_DRY_RUN": "0", "REFINERY_VERBOSE": ""}
    req = cli_run.parse_run(folders, environ=env, cwd=tmp_path)
    assert req.args.jobs == 3
    assert req.args.dry_run is False and req.args.verbose is None
    assert req.sources["jobs"] == "REFINERY_JOBS" and req.sources["input"] == "--input"
    conf = cli_run.config_from_args(req.args, req.config, req.sources)
    assert conf["target"]["platform_tag"] == "native"
    assert conf["index"]["url"] == "https://example.invalid/simple"
    assert conf["index"]["extra_urls"] == ["https://a.invalid/simple", "https://b.invalid/simple"]
    assert conf["strategy"]["fallback_latest"] is True
    assert conf["closure_check"] is False


def test_environment_gives_the_required_folders(tmp_path, folders):
    from refinery_lib import cli_run

    env = dict(zip(("REFINERY_INPUT", "REFINERY_OUTPUT", "REFINERY_CACHE"), folders[1::2],
                   strict=True))
    req = cli_run.parse_run([], environ=env, cwd=tmp_path)
    assert req.args.input == folders[1]
    assert req.sources["output"] == "REFINERY_OUTPUT"


def test_precedence_command_line_over_environment_over_config_file(folders, repo,
                                                                   monkeypatch):
    from refinery_lib import cli_run

    (repo / "refinery.toml").write_text('[target]\npython = "3.10"\nplatform_tag = "native"\n'
                                        '[strategy]\nfallback_latest = true\n')
    monkeypatch.chdir(repo)

    def conf(argv, env):
        req = cli_run.parse_run([*folders, *argv], environ=env)
        return cli_run.config_from_args(req.args, req.config, req.sources)

    assert conf([], {})["target"]["python"] == "3.10"  # the file over config.yaml
    assert conf([], {"REFINERY_PYTHON": "3.12"})["target"]["python"] == "3.12"
    assert conf(["--python", "3.13"], {"REFINERY_PYTHON": "3.12"})["target"]["python"] == "3.13"
    # a false boolean in the environment overrides the file's true
    assert conf([], {"REFINERY_FALLBACK_LATEST": "no"})["strategy"]["fallback_latest"] is False
    assert conf([], {})["strategy"]["fallback_latest"] is True
    # lists: the command line replaces the environment's, not adds to it
    req = cli_run.parse_run([*folders, "--rebuild", "a"], environ={"REFINERY_REBUILD": "b c"})
    assert req.args.rebuild == ["a"]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"REFINERY_JOBS": "many"}, "REFINERY_JOBS='many': not a valid int"),
        ({"REFINERY_DRY_RUN": "maybe"}, "REFINERY_DRY_RUN='maybe': give 1/true/yes or 0/false/no"),
        ({"REFINERY_BUILDER": "remote"}, "REFINERY_BUILDER='remote': choose from auto, local"),
    ],
)
def test_bad_environment_value_is_a_usage_error(folders, env, says, capsys):
    from refinery_lib import cli_run

    with pytest.raises(SystemExit) as exc:
        cli_run.parse_run(folders, environ=env)
    assert exc.value.code == 2
    assert last_line(capsys.readouterr().err).startswith(f"refinery: error: {says}")


def test_target_errors_name_where_the_value_came_from(folders, repo, monkeypatch):
    from refinery_lib import cli_run
    from refinery_lib.errors import ConfigError

    monkeypatch.chdir(repo)
    req = cli_run.parse_run(folders, environ={"REFINERY_PLATFORM_TAG": "manylinux2014_s390"})
    with pytest.raises(ConfigError, match="REFINERY_PLATFORM_TAG 'manylinux2014_s390'"):
        cli_run.config_from_args(req.args, req.config, req.sources)
    (repo / "refinery.toml").write_text('[target]\npython = "three"\n')
    req = cli_run.parse_run(folders, environ={})
    with pytest.raises(ConfigError, match=r"target\.python in .*refinery\.toml 'three' is not"):
        cli_run.config_from_args(req.args, req.config, req.sources)


def test_python_flag_error_names_the_flag_not_a_pattern(folders, tmp_path, capsys):
    assert cli.main([*folders, "--python", "3.x"]) == 2
    line = last_line(capsys.readouterr().err)
    assert line == ("refinery: error: --python '3.x' is not a Python version; give "
                    "major.minor, e.g. 3.11")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_discovery_nearest_file_wins_and_stops_at_the_repository(repo, tmp_path):
    from refinery_lib.cli_config import discover

    deep = repo / "a" / "b"
    deep.mkdir(parents=True)
    assert discover(deep) is None
    (tmp_path / "refinery.toml").write_text("")  # above the repository: never found
    assert discover(deep) is None
    (repo / "refinery.toml").write_text("")
    assert discover(deep).path == repo / "refinery.toml"
    # a pyproject.toml without [tool.refinery] is the project's own: skipped
    (repo / "a" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert discover(deep).path == repo / "refinery.toml"
    (repo / "a" / "pyproject.toml").write_text('[project]\nname = "x"\n'
                                               '[tool.refinery.target]\npython = "3.12"\n')
    found = discover(deep)
    assert found.path == repo / "a" / "pyproject.toml" and found.load() == {
        "target": {"python": "3.12"}}
    # in one folder, refinery.toml wins over pyproject.toml
    (repo / "a" / "refinery.toml").write_text('[target]\npython = "3.13"\n')
    assert discover(deep).path == repo / "a" / "refinery.toml"


def test_explicit_config_wins_over_discovery(folders, repo, monkeypatch, tmp_path):
    from refinery_lib import cli_run

    (repo / "refinery.toml").write_text('[target]\npython = "3.10"\n')
    mine = tmp_path / "mine.yaml"
    mine.write_text("target:\n  python: '3.12'\n")
    monkeypatch.chdir(repo)
    req = cli_run.parse_run([*folders, "--config", str(mine)], environ={})
    assert req.config.path == mine and req.config.how == "--config"
    req = cli_run.parse_run(folders, environ={"REFINERY_CONFIG": str(mine)})
    assert req.config.path == mine and req.config.how == "REFINERY_CONFIG"
    conf = cli_run.config_from_args(req.args, req.config, req.sources)
    assert conf["target"]["python"] == "3.12"
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[tool.refinery.target]\npython = "3.9"\n')
    req = cli_run.parse_run([*folders, "--config", str(pyproject)], environ={})
    assert cli_run.config_from_args(req.args, req.config)["target"]["python"] == "3.9"


def test_found_config_is_recorded_in_the_run_config_header(folders, repo, monkeypatch):
    from refinery_lib import cli_run

    (repo / "pyproject.toml").write_text('[tool.refinery]\nschedule = "fifo"\n')
    monkeypatch.chdir(repo)
    req = cli_run.parse_run(folders, environ={"REFINERY_JOBS": "2"})
    header = cli_run.config_header(req)
    assert f"config file: {repo / 'pyproject.toml'} [tool.refinery]" in header
    assert "from the environment: REFINERY_JOBS" in header
    assert all(line.startswith("#") for line in header.splitlines())


def test_demo_takes_a_destination_and_run_options(monkeypatch):
    from refinery_lib import cli_run
    from refinery_lib.demo import demo_argv

    calls = []
    monkeypatch.setattr(cli_run, "run", lambda argv: calls.append(argv) or 0)
    assert cli.main(["demo", "/tmp/somewhere", "--jobs", "2"]) == 0
    assert cli.main(["demo", "--verbose"]) == 0
    assert calls == [demo_argv(Path("/tmp/somewhere"), ["--jobs", "2"]),
                     demo_argv(Path("./refinery-demo"), ["--verbose"])]


def test_serve_refuses_a_missing_database(tmp_path, monkeypatch, capsys):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(a))
    monkeypatch.delenv("HISTORY_DB", raising=False)
    assert cli.main(["serve", "--db", str(tmp_path / "nope.db")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"refinery: error: no history database at {tmp_path / 'nope.db'}; check the path, or "
        "pass --allow-missing-db to serve before the first run"]
    assert not served and not (tmp_path / "nope.db").exists()
    assert cli.main(["serve", "--db", str(tmp_path / "nope.db"), "--allow-missing-db"]) == 0
    assert len(served) == 1


def test_worker_checks_run_options_before_draining(tmp_path, capsys):
    for d in ("in", "out", "cache"):
        (tmp_path / d).mkdir()
    queue = RetryQueue.in_cache(tmp_path / "cache")
    queue.add(RetryRequest("cfast"))
    rc = cli.main(["worker", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                   "--cache", str(tmp_path / "cache"), "--jbos", "2"])
    assert rc == 2
    assert "unknown option '--jbos'; did you mean '--jobs'?" in capsys.readouterr().err
    assert len(RetryQueue.in_cache(tmp_path / "cache")) == 1  # nothing drained or buried


def test_history_json_still_works(tmp_path, capsys):
    from refinery_lib.history import History

    History(tmp_path / "history.db")
    assert cli.main(["history", "--db", str(tmp_path / "history.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recent"] == []
