"""Settings: documented fields, environment over TOML over defaults, a SQLite default."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import make_url

from monitor.config import CONFIG_FILE_ENV, Settings, get_settings, reset_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No MONITOR_* variable from the caller's shell, and no real home directory."""
    for name in list(os.environ):
        if name.startswith("MONITOR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    reset_settings()
    yield
    reset_settings()


def write_toml(path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(path))


def test_every_field_is_documented() -> None:
    assert Settings.model_fields, "Settings has no fields"
    undocumented = [
        name
        for name, field in Settings.model_fields.items()
        if not (field.description and field.description.strip())
    ]
    assert undocumented == []


def test_defaults_without_environment_or_file() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.database_url is None
    assert settings.admin_token is None


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_PORT", "9123")
    monkeypatch.setenv("MONITOR_DATABASE_URL", "postgresql+psycopg://u@db:5432/fleet")
    monkeypatch.setenv("MONITOR_ADMIN_TOKEN", "adm1n-t0ken")
    settings = Settings()
    assert settings.port == 9123
    assert settings.resolved_database_url == "postgresql+psycopg://u@db:5432/fleet"
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "adm1n-t0ken"
    assert "adm1n-t0ken" not in repr(settings)


def test_environment_values_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_toml_file_named_by_monitor_config_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(
        tmp_path / "monitor.toml",
        'port = 9200\nlog_level = "DEBUG"\npayload_compression = "zstd"\n',
        monkeypatch,
    )
    settings = Settings()
    assert (settings.port, settings.log_level, settings.payload_compression) == (
        9200,
        "DEBUG",
        "zstd",
    )


def test_environment_wins_over_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(tmp_path / "monitor.toml", 'port = 9200\nlog_level = "DEBUG"\n', monkeypatch)
    monkeypatch.setenv("MONITOR_PORT", "9300")
    settings = Settings()
    assert settings.port == 9300
    assert settings.log_level == "DEBUG"


def test_default_database_is_a_sqlite_file_in_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DATA_DIR", str(tmp_path / "state"))
    url = make_url(Settings().resolved_database_url)
    assert url.get_backend_name() == "sqlite"
    assert Path(url.database or "") == tmp_path / "state" / "edge-monitor.db"


def test_default_data_dir_follows_xdg_data_home(tmp_path: Path) -> None:
    settings = Settings()
    assert settings.data_dir == tmp_path / "xdg" / "edge-monitor"
    assert Path(make_url(settings.resolved_database_url).database or "").parent == (
        settings.data_dir
    )


def test_get_settings_reads_once() -> None:
    assert get_settings() is get_settings()


def test_data_dir_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MONITOR_DATA_DIR", "~/edge")
    assert Settings().data_dir == tmp_path / "home" / "edge"


def test_request_pressure_settings_have_defaults_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings()
    assert (defaults.header_timeout_seconds, defaults.body_timeout_seconds) == (10.0, 30.0)
    assert (defaults.rate_limit_per_second, defaults.rate_limit_burst) == (200.0, 400)
    assert defaults.body_memory_bytes == 256 * 1024 * 1024
    assert defaults.max_header_bytes == 64 * 1024
    assert defaults.max_concurrency is None

    monkeypatch.setenv("MONITOR_HEADER_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("MONITOR_BODY_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("MONITOR_RATE_LIMIT_PER_SECOND", "0")
    monkeypatch.setenv("MONITOR_RATE_LIMIT_BURST", "10")
    monkeypatch.setenv("MONITOR_BODY_MEMORY_BYTES", str(512 * 1024 * 1024))
    monkeypatch.setenv("MONITOR_MAX_HEADER_BYTES", "8192")
    monkeypatch.setenv("MONITOR_MAX_CONCURRENCY", "500")
    settings = Settings()
    assert (settings.header_timeout_seconds, settings.body_timeout_seconds) == (2.5, 7.0)
    assert (settings.rate_limit_per_second, settings.rate_limit_burst) == (0.0, 10)
    assert settings.body_memory_bytes == 512 * 1024 * 1024
    assert (settings.max_header_bytes, settings.max_concurrency) == (8192, 500)


def test_a_body_budget_too_small_for_the_largest_body_is_refused() -> None:
    # With room for it, the largest body would be refused as busy forever.
    with pytest.raises(ValidationError, match="body_memory_bytes"):
        Settings(body_memory_bytes=100 * 1024 * 1024)
    small_bodies = Settings(
        max_wire_bytes=1024 * 1024, max_decoded_bytes=1024 * 1024, body_memory_bytes=13 * 2**20
    )
    assert small_bodies.body_memory_bytes == 13 * 2**20


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="header_timeout_seconds"):
        Settings(header_timeout_seconds=0)
    with pytest.raises(ValidationError, match="body_timeout_seconds"):
        Settings(body_timeout_seconds=-1)
