"""One typed Settings object: environment (MONITOR_*), an optional TOML file, then defaults."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from monitor import wire

#: Environment variable naming an optional TOML settings file (keys are the field names).
CONFIG_FILE_ENV = "MONITOR_CONFIG"
#: How many times its decoded size a request body is counted in ``body_memory_bytes``: JSON
#: records parsed into Python objects, validated and prepared for storage peak at about ten
#: times their text (bench/collector_pressure.py measures it).
BODY_MEMORY_FACTOR = 10
#: The share of ``body_memory_bytes`` (one part in this many) that only small bodies may use.
BODY_MEMORY_HEADROOM = 8


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "edge-monitor"


class Settings(BaseSettings):
    """Every setting of the service. Environment variables are the field names in upper case
    with the prefix ``MONITOR_`` (``MONITOR_DATABASE_URL``); a TOML file named by
    ``MONITOR_CONFIG`` may set the same keys; the environment wins over the file."""

    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Directory for the embedded SQLite database and other local state.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the database. Default: a SQLite file `edge-monitor.db` in "
            "`data_dir`. For a fleet: `postgresql+psycopg://user:pass@host:5432/dbname`."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the collector listens on.")
    port: int = Field(default=8750, ge=0, le=65535, description="Port the collector listens on.")
    collector_workers: int = Field(
        default=1,
        ge=1,
        description="Collector processes started by `serve` (about one per core).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=(
            "Token that guards the admin API (`Authorization: Bearer ...`). "
            "Unset: the admin API answers 403 to everyone."
        ),
    )
    read_token: SecretStr | None = Field(
        default=None,
        description=(
            "Token that may read results and node health (`GET /v1/models/{model}/windows`, "
            "`.../results`, `/v1/nodes/health`) and nothing else; the admin token reads them too."
        ),
    )
    max_wire_bytes: int = Field(
        default=wire.MAX_WIRE_BYTES, ge=1024, description="Largest request body on the wire."
    )
    max_decoded_bytes: int = Field(
        default=wire.MAX_DECODED_BYTES,
        ge=1024,
        description="Largest request body after gzip decoding; enforced while decompressing.",
    )
    body_memory_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024 * 1024,
        description=(
            "Memory one collector process may spend at once on request bodies being read, "
            "decoded, parsed and stored, estimated per request as its size on the wire plus "
            f"{BODY_MEMORY_FACTOR} times its decoded size (what parsed JSON records measure). "
            "A request that does not fit is answered 503 (code `busy`) with Retry-After at "
            "once; the last eighth is kept for small bodies, so ordinary batches keep flowing."
        ),
    )
    rate_limit_per_second: float = Field(
        default=200.0,
        ge=0,
        description=(
            "Requests per second each node token may make, on average (a token bucket); "
            "beyond it the node is answered 429 with Retry-After. 0 turns the limit off."
        ),
    )
    rate_limit_burst: int = Field(
        default=400,
        ge=1,
        description="Requests a node token may make at once before the per-second rate applies.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Time a connection has to send a request's complete headers (from connecting, or "
            "from the first byte of its next request); then it is answered 408 and closed."
        ),
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Time a request has to send its complete body once its headers are in; then it "
            "is answered 408 and its connection closed."
        ),
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request line plus headers; a larger one is answered 431 and closed.",
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Most connections plus requests in progress per collector process; beyond it new "
            "requests are answered 503 by the server (uvicorn's limit_concurrency). Unset: "
            "no limit besides the body memory budget and the timeouts."
        ),
    )
    db_pool_size: int = Field(
        default=8, ge=1, description="Connections kept open per process to PostgreSQL."
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description="How long a SQLite writer waits for the lock before giving up.",
    )
    db_lock_timeout_ms: int = Field(
        default=5_000,
        ge=0,
        description=(
            "PostgreSQL: how long one collector statement waits for a lock before the request "
            "is answered 503 with Retry-After (0: without bound)."
        ),
    )
    db_statement_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description=(
            "PostgreSQL: how long one collector statement may run before the request is "
            "answered 503 with Retry-After (0: without bound). Workers are not bounded."
        ),
    )
    max_reported_versions: int = Field(
        default=20,
        ge=0,
        description=(
            "Unregistered versions of one model that nodes may create by reporting them; past "
            "it a batch of a new unregistered version is refused (422 unregistered_version)."
        ),
    )
    payload_compression: str = Field(
        default="lz4",
        pattern="^(zstd|lz4|none)$",
        description="Compression of the columnar record payload stored per batch.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO",
        description="Logging level of every edge-monitor process (the service and the command "
        "line): `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text` (one readable line per event) or `json` (one JSON object per line "
        "with time, level, logger, message and the event's fields, for log collectors); "
        "uvicorn's error and access logs included.",
    )
    log_heartbeats: bool = Field(
        default=False,
        description="Write an access-log line for every heartbeat (they arrive every few seconds "
        "from every node, so they are left out by default).",
    )
    worker_metrics_port: int = Field(
        default=8751,
        ge=0,
        le=65535,
        description="Port of the worker's Prometheus `/metrics` (fleet gauges read from the "
        "database); 0 turns it off. It listens on `host`.",
    )
    analysis_window_minutes: int = Field(
        default=15,
        ge=1,
        le=31 * 24 * 60,
        description="Length of the analysis windows of a model without its own window policy "
        "(`edge-monitor models window`), 1 minute to 31 days.",
    )
    analysis_grace_seconds: int = Field(
        default=120,
        ge=0,
        description="How long after a window ends the worker waits for late records.",
    )
    analysis_interval_seconds: int = Field(
        default=60, ge=1, description="How often the worker looks for windows to analyse."
    )
    analysis_lookback_hours: int = Field(
        default=48,
        ge=1,
        description="How far back the worker catches up on windows it has not analysed.",
    )
    analysis_late_horizon_hours: int = Field(
        default=30 * 24,
        ge=0,
        description="How far back records that arrive after their window was analysed re-open "
        "it (a node back from days offline); 0: never.",
    )
    analysis_pool_max_windows: int = Field(
        default=12,
        ge=1,
        description="A scope with too few rows for a verdict in one window is judged on up to "
        "this many consecutive windows pooled (1: never pooled).",
    )
    analysis_min_rows: int = Field(
        default=200,
        ge=1,
        description="Fewest rows in a scope (fleet, site, group, node) for "
        "a drift verdict; smaller scopes are reported as insufficient data.",
    )
    analysis_min_labels: int = Field(
        default=50, ge=1, description="Fewest labelled records in a scope for accuracy figures."
    )
    estimation_min_rows: int = Field(
        default=50,
        ge=1,
        description="Fewest scored records (prediction and class probabilities) in a scope "
        "for a performance estimate without labels.",
    )
    estimation_check_labels: int = Field(
        default=20,
        ge=1,
        description="Labelled records in a scope that suffice to check its estimate against "
        "what they realised (the trust verdict).",
    )
    analysis_fdr: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="False discovery rate of the drift verdicts across all nodes and features "
        "of a window (Benjamini-Hochberg).",
    )
    analysis_lease_seconds: int = Field(
        default=600,
        ge=1,
        description="How long a worker holds a window before another may take it over "
        "(a long analysis renews it every third of this).",
    )
    quality_max_missing_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="A feature's share of missing values above which it is a data-quality issue.",
    )
    quality_max_out_of_range_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="A numerical feature's share of values outside the reference's range above "
        "which it is a data-quality issue.",
    )
    quality_max_new_category_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="A categorical feature's share of rows with categories the reference never "
        "had above which it is a data-quality issue.",
    )
    health_offline_after_seconds: int = Field(
        default=120, ge=1, description="A node with no heartbeat for this long is offline."
    )

    alerts_file: Path | None = Field(
        default=None,
        description=(
            "A TOML file of alert rules, webhook endpoints and retrain hooks (see "
            "`edge-monitor alerts apply`); the worker applies it when it starts."
        ),
    )
    alerts_interval_seconds: int = Field(
        default=30,
        ge=1,
        description=(
            "How often the worker judges the node rules (offline, clock skew, SDK drops, "
            "latency) and starts queued retrain runs; due webhook messages go out every 5 s "
            "(or this, when shorter)."
        ),
    )
    webhook_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=60,
        description="How long one webhook delivery may take (connect, send, answer).",
    )
    webhook_disable_after_days: float = Field(
        default=3.0,
        gt=0,
        description=(
            "An endpoint whose every delivery has failed for this long is disabled (a 410 "
            "disables it at once); its pending messages are dropped."
        ),
    )
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description=(
            "Networks (CIDR, e.g. `127.0.0.1/32`) that webhook and retrain-hook targets may "
            "be on although they are loopback, link-local or private; refused otherwise."
        ),
    )
    retrain_promotion_margin: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description=(
            "A retrained candidate is promoted to the canary only when its accuracy on the "
            "held-out recent labelled records beats production's by at least this much."
        ),
    )
    retrain_canary_share: float = Field(
        default=0.25,
        gt=0,
        lt=1,
        description="Share of the nodes that run a candidate during its canary.",
    )
    retrain_canary_windows: int = Field(
        default=3,
        ge=1,
        description=(
            "Analysis windows a canary runs before it is judged: rolled out to every node, or "
            "rolled back when its accuracy or drift regresses against the rest of the fleet."
        ),
    )

    dashboard_port: int = Field(
        default=8752,
        ge=1,
        le=65535,
        description="Port of `edge-monitor dashboard` (the Streamlit app); it listens on "
        "`MONITOR_HOST`.",
    )
    dashboard_refresh_seconds: int = Field(
        default=30,
        ge=0,
        description="How often an open dashboard page redraws itself with fresh data; 0: only "
        "when asked.",
    )
    dashboard_cache_seconds: int = Field(
        default=10,
        ge=0,
        le=3600,
        description="How long the dashboard keeps a query's answer before it asks the database "
        "again (every viewer shares it).",
    )

    @field_validator("data_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _largest_body_fits_the_budget(self) -> Settings:
        # A body that can never fit would be refused as busy forever, and retried forever.
        largest = self.max_wire_bytes + BODY_MEMORY_FACTOR * self.max_decoded_bytes
        needed = -(-largest * BODY_MEMORY_HEADROOM // (BODY_MEMORY_HEADROOM - 1))
        if self.body_memory_bytes < needed:
            raise ValueError(
                f"body_memory_bytes ({self.body_memory_bytes}) must be at least {needed} to admit "
                f"the largest body (max_wire_bytes + {BODY_MEMORY_FACTOR} x max_decoded_bytes, "
                f"in the {BODY_MEMORY_HEADROOM - 1}/{BODY_MEMORY_HEADROOM} large bodies may use)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            _check_config_file(Path(config_file))
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'edge-monitor.db'}"

    @property
    def shown_database_url(self) -> str:
        """The database URL in force with its password hidden, for messages and logs."""
        return hide_password(self.resolved_database_url)


def hide_password(url: str) -> str:
    """``url`` with its password, if it has one, shown as ``***`` (as SQLAlchemy shows it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///relative``, ``sqlite:////absolute``); None for
    other databases and for in-memory or URI-style SQLite."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] != "sqlite" or not rest.startswith("/"):
        return None
    database = rest[1:].split("?", 1)[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each bad one by where it was set:
    ``MONITOR_PORT``, ``port in FILE`` (the MONITOR_CONFIG file) or the caller's name of an
    override (the command line's flag)."""


def _check_config_file(path: Path) -> None:
    # pydantic-settings reads a missing file as an empty one: a typo in MONITOR_CONFIG would
    # silently run on defaults.
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"{CONFIG_FILE_ENV}={path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{CONFIG_FILE_ENV}={path} is not TOML: {exc}") from None


def explain(error: ValidationError, overrides: Mapping[str, str] | None = None) -> str:
    """One line naming every bad setting by its source, in the order the sources win: an
    override (named as ``overrides`` maps it: a flag), the environment, the TOML file."""
    named = dict(overrides or {})
    config_file = os.environ.get(CONFIG_FILE_ENV)
    environment = {key.upper() for key in os.environ}
    problems = []
    for item in error.errors():
        message = item["msg"]
        if item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        field = str(item["loc"][0]) if item["loc"] else None
        if field is None:
            problems.append(message)
            continue
        variable = f"MONITOR_{field.upper()}"
        if field in named:
            where = named[field]
        elif variable in environment:
            where = variable
        elif config_file:
            where = f"{config_file} ({CONFIG_FILE_ENV}): {field}"
        else:
            where = variable
        problems.append(f"{where}={item.get('input')!r}: {message[:1].lower()}{message[1:]}")
    return "; ".join(problems)


def load_settings(
    overrides: Mapping[str, object] | None = None, names: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``overrides``, the environment and the TOML file; SettingsError (one line
    naming each bad setting, ``names`` naming the overrides) when they cannot be used."""
    try:
        return Settings(**dict(overrides or {}))  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(explain(exc, names)) from None


_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read once (or as set by ``configure``)."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def reset_settings() -> None:
    """Forget the process-wide settings; the next ``get_settings`` reads them again."""
    global _current
    _current = None


def configure(names: Mapping[str, str] | None = None, /, **overrides: object) -> Settings:
    """Make the process-wide settings the environment's plus ``overrides`` (the CLI's flags,
    which ``names`` names in errors)."""
    global _current
    _current = load_settings(overrides, names)
    return _current
