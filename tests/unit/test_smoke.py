"""Import smoke test of a wheel on the host as the target: unpacked, or installed by pip."""

import pytest

from refinery_lib import smoke
from tests.fixtures.config import unit_settings
from tests.fixtures.projects import make_wheel


@pytest.fixture
def settings(tmp_path):
    return unit_settings(tmp_path, platform_tag="native")


def _spy_pip(monkeypatch):
    calls = []
    real = smoke.proc.run

    def run(argv, **kw):
        if argv[1:3] == ["-m", "pip"]:
            calls.append(argv)
        return real(argv, **kw)

    monkeypatch.setattr(smoke.proc, "run", run)
    return calls


def test_wheel_without_requirements_is_unpacked_not_installed(settings, tmp_path, monkeypatch):
    pip_calls = _spy_pip(monkeypatch)
    wheel = make_wheel(
        tmp_path / "w", "solo", "1.0", requires=("pywin32; sys_platform == 'win32'",)
    )
    result = smoke.smoke_import(settings, wheel)
    assert result["ok"] is True and result["modules"] == ["solo"]
    assert pip_calls == []  # the only requirement does not apply on the target


def test_failing_import_is_named_without_pip(settings, tmp_path, monkeypatch):
    pip_calls = _spy_pip(monkeypatch)
    wheel = make_wheel(
        tmp_path / "w", "broken", "1.0", files={"broken/__init__.py": b"import no_such_module\n"}
    )
    result = smoke.smoke_import(settings, wheel)
    assert result["ok"] is False and "no_such_module" in result["detail"]
    assert pip_calls == []


def test_wheel_with_requirement_is_installed_by_pip(settings, tmp_path, monkeypatch):
    pip_calls = _spy_pip(monkeypatch)
    wheel = make_wheel(
        tmp_path / "w",
        "app",
        "1.0",
        requires=("helper>=1",),
        files={"app/__init__.py": b"import helper\n"},
    )
    make_wheel(tmp_path / "deps", "helper", "1.2")
    result = smoke.smoke_import(settings, wheel, find_links=(tmp_path / "deps",))
    assert result["ok"] is True, result
    assert len(pip_calls) == 1
    # without the dependency pip fails, and the result says why
    (tmp_path / "deps" / "helper-1.2-py3-none-any.whl").unlink()
    result = smoke.smoke_import(settings, wheel, find_links=(tmp_path / "deps",))
    assert result["ok"] is False and "helper" in result["detail"]


def test_data_folder_needs_pip(settings, tmp_path):
    plain = make_wheel(tmp_path / "w", "plain", "1.0")
    scripts = make_wheel(
        tmp_path / "w",
        "tool",
        "1.0",
        files={"tool/__init__.py": b"", "tool-1.0.data/scripts/tool": b"#!python\n"},
    )
    assert smoke._needs_pip(plain, settings) is False
    assert smoke._needs_pip(scripts, settings) is True
