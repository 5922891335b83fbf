"""A bad setting is a usage error (exit 2) in one line that names it where it was set: the
MONITOR_ variable, the key in the MONITOR_CONFIG file, or the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import SettingsError, hide_password, load_settings, sqlite_file


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MONITOR_PORT", "MONITOR_CONFIG", "MONITOR_LOG_LEVEL", "MONITOR_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))


def error_of(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(list(args))
    return code, capsys.readouterr().err.splitlines()


def test_an_environment_variable_is_named_by_its_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONITOR_LOG_FORMAT", "xml")

    assert error_of(capsys, "nodes", "list") == (
        2,
        ["edge-monitor: error: MONITOR_LOG_FORMAT='xml': input should be 'text' or 'json'"],
    )


def test_a_key_of_the_config_file_is_named_with_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text('port = 70000\nlog_level = "chatty"\n')
    monkeypatch.setenv("MONITOR_CONFIG", str(config))

    code, lines = error_of(capsys, "serve")

    assert code == 2
    assert lines == [
        f"edge-monitor: error: {config} (MONITOR_CONFIG): port=70000: input should be less than "
        f"or equal to 65535; {config} (MONITOR_CONFIG): log_level='CHATTY': input should be "
        "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"
    ]


def test_the_environment_wins_over_the_file_and_is_named_when_it_is_the_bad_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text("port = 9000\n")
    monkeypatch.setenv("MONITOR_CONFIG", str(config))
    monkeypatch.setenv("MONITOR_PORT", "abc")

    code, lines = error_of(capsys, "serve")

    assert code == 2
    assert lines[0].startswith("edge-monitor: error: MONITOR_PORT='abc': input should be")


def test_a_missing_or_broken_config_file_is_an_error_not_the_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("MONITOR_CONFIG", str(tmp_path / "nope.toml"))
    assert error_of(capsys, "nodes", "list") == (
        2,
        [
            f"edge-monitor: error: MONITOR_CONFIG={tmp_path / 'nope.toml'}: cannot read it: "
            "No such file or directory"
        ],
    )

    (tmp_path / "broken.toml").write_text("port = \n")
    monkeypatch.setenv("MONITOR_CONFIG", str(tmp_path / "broken.toml"))
    code, lines = error_of(capsys, "nodes", "list")
    assert code == 2
    assert lines[0].startswith(
        f"edge-monitor: error: MONITOR_CONFIG={tmp_path / 'broken.toml'} is not TOML: "
    )


def test_a_setting_given_by_flag_is_named_by_the_flag() -> None:
    # The command line hands its flags to the settings with their names (all of its flags
    # take any text today, so the naming is shown with a port).
    with pytest.raises(SettingsError) as raised:
        load_settings({"port": "eighty"}, {"port": "--port"})

    assert str(raised.value).startswith("--port='eighty': input should be a valid integer")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://fleet:s3cret@db:5432/m", "postgresql+psycopg://fleet:***@db:5432/m"),
        ("postgresql://fleet:p%40ss@[::1]/m?x=1", "postgresql://fleet:***@[::1]/m?x=1"),
        ("postgresql://fleet@db/m", "postgresql://fleet@db/m"),
        ("sqlite:////var/lib/edge-monitor.db", "sqlite:////var/lib/edge-monitor.db"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert hide_password(url) == shown


def test_the_sqlite_file_of_a_url_is_found_and_other_databases_have_none() -> None:
    assert sqlite_file("sqlite:///data/edge-monitor.db") == Path("data/edge-monitor.db")
    assert sqlite_file("sqlite:////abs/m.db?timeout=5") == Path("/abs/m.db")
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://u@h/db") is None
