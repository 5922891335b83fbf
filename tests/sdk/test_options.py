"""MonitorOptions: one frozen object, validated when made, naming the option it refuses."""

from __future__ import annotations

import dataclasses
import math
import ssl
from typing import Any

import pytest

from monitor import wire
from monitor.sdk import Monitor, MonitorOptions
from monitor.sdk.options import MiB

from .fakes import ScriptedCollector


def test_defaults_are_the_documented_ones() -> None:
    opts = MonitorOptions()
    assert dataclasses.asdict(opts) == {
        "sample_rate": 1.0,
        "spool_dir": None,
        "batch_size": 500,
        "flush_interval": 1.0,
        "spool_flush_interval": 0.5,
        "queue_size": 10_000,
        "spool_max_bytes": 256 * MiB,
        "spool_max_age": 7 * 24 * 3600.0,
        "timeout": 10.0,
        "max_backoff": 60.0,
        "backoff_base": 0.5,
        "auth_max_backoff": 300.0,
        "dead_letter_max_bytes": 16 * MiB,
        "heartbeat_interval": 30.0,
        "gzip_level": 6,
        "telemetry": None,
        "atexit_timeout": 2.0,
        "ssl_context": None,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.batch_size = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sample_rate", 1.5),
        ("sample_rate", -0.1),
        ("sample_rate", math.nan),
        ("sample_rate", True),
        ("sample_rate", "0.5"),
        ("spool_dir", True),
        ("spool_dir", 3),
        ("batch_size", 0),
        ("batch_size", wire.MAX_RECORDS_PER_BATCH + 1),
        ("batch_size", 10.0),
        ("batch_size", True),
        ("queue_size", 0),
        ("spool_max_bytes", 0),
        ("spool_max_age", 0),
        ("spool_max_age", -1.0),
        ("gzip_level", 10),
        ("gzip_level", -1),
        ("flush_interval", 0),
        ("flush_interval", math.inf),
        ("spool_flush_interval", -1),
        ("timeout", math.nan),
        ("timeout", math.inf),
        ("max_backoff", 0),
        ("backoff_base", "1"),
        ("auth_max_backoff", 0),
        ("auth_max_backoff", math.inf),
        ("dead_letter_max_bytes", -1),
        ("dead_letter_max_bytes", 1.5),
        ("dead_letter_max_bytes", True),
        ("heartbeat_interval", 0),
        ("heartbeat_interval", math.inf),
        ("telemetry", "not callable"),
        ("atexit_timeout", -1),
        ("atexit_timeout", math.inf),
        ("ssl_context", "cafile.pem"),
    ],
)
def test_an_invalid_option_raises_value_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        MonitorOptions(**{name: value})
    with pytest.raises(ValueError, match=name):
        Monitor("http://127.0.0.1:1", "t", "pump", "3", **{"spool_dir": False, name: value})


def test_numbers_are_normalised_and_edge_values_accepted() -> None:
    opts = MonitorOptions(
        sample_rate=0,
        timeout=3,
        spool_max_age=math.inf,
        heartbeat_interval=None,
        atexit_timeout=0,
        auth_max_backoff=1,
        dead_letter_max_bytes=0,
        spool_dir="",
        ssl_context=ssl.create_default_context(),
    )
    assert opts.sample_rate == 0.0 and isinstance(opts.sample_rate, float)
    assert opts.timeout == 3.0 and isinstance(opts.timeout, float)
    assert opts.spool_max_age == math.inf and opts.heartbeat_interval is None
    assert opts.auth_max_backoff == 1.0 and isinstance(opts.auth_max_backoff, float)
    assert opts.dead_letter_max_bytes == 0


def test_monitor_takes_an_options_object_and_keywords_override_it(
    collector: ScriptedCollector,
) -> None:
    base = MonitorOptions(spool_dir=False, heartbeat_interval=None, batch_size=7)
    mon = Monitor(collector.url, "t", "pump", "3", options=base)
    assert mon.options is base
    mon.close(0.5)
    tuned = Monitor(collector.url, "t", "pump", "3", options=base, sample_rate=0.5)
    assert tuned.options == dataclasses.replace(base, sample_rate=0.5)
    assert tuned.sample_rate == 0.5
    tuned.close(0.5)
    plain = Monitor(collector.url, "t", "pump", "3", spool_dir=False, heartbeat_interval=None)
    assert plain.options == MonitorOptions(spool_dir=False, heartbeat_interval=None)
    plain.close(0.5)


def test_monitor_refuses_what_is_not_an_option() -> None:
    with pytest.raises(ValueError, match="options"):
        Monitor("http://127.0.0.1:1", "t", "pump", "3", options={"batch_size": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Monitor("http://127.0.0.1:1", "t", "pump", "3", spool_dri=False)
    with pytest.raises(ValueError, match="batch_size"):
        Monitor("http://127.0.0.1:1", "t", "pump", "3", options=MonitorOptions(), batch_size=0)
