"""Logs: text or one JSON object per line for our loggers and uvicorn's, heartbeats out of the
access log unless asked for, and the worker's INFO lines (one per analysed window, one per
health run that changed something)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.config import Settings
from monitor.fleet.scenarios import scenario
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.jobs.health import HealthRules, check_fleet
from monitor.logs import DropHeartbeats, JsonFormatter, configure_logging, uvicorn_log_config
from monitor.storage import heartbeats, nodes
from monitor.storage.engine import begin_write
from tests.jobs.fleetdata import WINDOW, register_demo_model, register_fleet, store_readings

REPO = Path(__file__).resolve().parents[1]


def record(name: str, message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, message, args or None, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_time_level_logger_message_and_the_extra_fields() -> None:
    line = JsonFormatter().format(record("monitor.jobs", "analysed %d", 3, model="pump"))

    event = json.loads(line)
    assert event.pop("time").endswith("+00:00")
    assert event == {
        "level": "INFO",
        "logger": "monitor.jobs",
        "message": "analysed 3",
        "model": "pump",
    }


def test_an_access_line_in_json_names_its_parts() -> None:
    access = record(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "10.0.0.7:5123",
        "POST",
        "/v1/records",
        "1.1",
        200,
    )

    event = json.loads(JsonFormatter().format(access))

    assert event["message"] == '10.0.0.7:5123 - "POST /v1/records HTTP/1.1" 200'
    assert (event["method"], event["path"], event["status"]) == ("POST", "/v1/records", 200)
    assert event["client"] == "10.0.0.7:5123"


def test_heartbeats_are_left_out_of_the_access_log_and_nothing_else() -> None:
    def access(path: str) -> logging.LogRecord:
        return record("uvicorn.access", '%s - "%s %s HTTP/%s" %d', "c", "POST", path, "1.1", 202)

    drop = DropHeartbeats()

    assert not drop.filter(access("/v1/heartbeats"))
    assert not drop.filter(access("/v1/heartbeats?x=1"))
    assert drop.filter(access("/v1/records"))
    assert drop.filter(record("uvicorn.access", "a line of another shape"))


def test_uvicorn_gets_our_format_and_the_heartbeat_filter_unless_heartbeats_are_wanted() -> None:
    quiet = uvicorn_log_config(Settings(log_format="json"))
    loud = uvicorn_log_config(Settings(log_heartbeats=True, log_level="warning"))

    assert quiet["formatters"]["default"] == {"()": "monitor.logs.JsonFormatter"}
    assert quiet["loggers"]["uvicorn.access"]["filters"] == ["heartbeats"]
    assert quiet["root"]["level"] == "INFO"
    assert "filters" not in loud["loggers"]["uvicorn.access"]
    assert loud["root"]["level"] == "WARNING"


def test_logging_is_left_alone_where_someone_set_it_up_already() -> None:
    # pytest's handlers are on the root logger: an application calling main() keeps its own.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    configure_logging(Settings(log_level="DEBUG", log_format="json"))

    assert (root.handlers, root.level) == (handlers, level)


def data_dir_with_a_node(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "db", "upgrade"]) == 0
    assert main(["--data-dir", str(data), "nodes", "add", "cam-1"]) == 0
    return data


def run(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=clean | env,
        cwd=REPO,
        timeout=120,
    )


def test_the_command_line_logs_at_the_settings_level_and_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = data_dir_with_a_node(tmp_path)
    add = lambda name: main(["--data-dir", str(data), "nodes", "add", name])  # noqa: E731

    text = run(data, "worker", "--once")  # MONITOR_LOG_LEVEL's default: INFO
    add("cam-2")
    as_json = run(data, "worker", "--once", MONITOR_LOG_FORMAT="json")
    add("cam-3")
    quiet = run(data, "worker", "--once", MONITOR_LOG_LEVEL="warning")

    assert re.search(r" INFO monitor\.jobs\.health: node health: cam-1 silent; ", text.stderr)
    events = [json.loads(line) for line in as_json.stderr.splitlines()]  # nothing but JSON
    health = [e for e in events if e["logger"] == "monitor.jobs.health"]
    assert len(health) == 1
    assert health[0]["level"] == "INFO"
    assert health[0]["changed"] == {"cam-2": "silent"}
    assert health[0]["statuses"] == {"silent": 2}
    assert quiet.returncode == 0, quiet.stderr
    assert "monitor.jobs.health" not in quiet.stderr


@pytest.mark.parametrize("log_heartbeats", ["false", "true"])
def test_serve_logs_json_for_uvicorn_too_and_heartbeats_only_when_asked(
    tmp_path: Path, log_heartbeats: str
) -> None:
    data = tmp_path / "data"
    assert main(["--data-dir", str(data), "db", "upgrade"]) == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env = clean | {"MONITOR_LOG_FORMAT": "json", "MONITOR_LOG_HEARTBEATS": log_heartbeats}
    with subprocess.Popen(
        [sys.executable, "-m", "monitor", "--data-dir", str(data), "serve", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    ) as server:
        assert server.stderr is not None
        lines = []
        try:
            for line in server.stderr:
                lines.append(line)
                found = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", line)
                if found:
                    break
            assert found, lines
            url = found.group(1)
            urllib.request.urlopen(f"{url}/readyz", timeout=10).close()
            with pytest.raises(urllib.error.HTTPError):  # no token: 401, logged or not
                urllib.request.urlopen(
                    urllib.request.Request(f"{url}/v1/heartbeats", data=b"{}", method="POST"),
                    timeout=10,
                )
        finally:
            server.terminate()
            lines += server.stderr.readlines()

    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= event.keys() for event in events)
    loggers = {event["logger"] for event in events}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers
    paths = [event["path"] for event in events if event["logger"] == "uvicorn.access"]
    assert "/readyz" in paths
    assert ("/v1/heartbeats" in paths) == (log_heartbeats == "true")


T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("steady", r"pump-failure window \S+: \d+ records, no drift$"),
        (
            "sudden-shift",
            r"pump-failure window \S+: \d+ records; drift at fleet on [\w, ]+; .*"
            r"\d+ of 8 node\(s\) drifting(; multivariate drift at .*)?$",
        ),
    ],
)
def test_the_worker_logs_one_info_line_per_window_with_its_verdicts(
    engine: Engine, caplog: pytest.LogCaptureFixture, name: str, expected: str
) -> None:
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, 8)
    plan = scenario(name, hours=24.0, sites=["site-a", "site-b", "site-c", "site-d"])
    store_readings(engine, model_id, plans, plan, T0, T0 + WINDOW, 300, t0=T0 - 4 * WINDOW)
    caplog.set_level(logging.INFO, logger="monitor.jobs.analysis")

    Worker(engine, AnalysisConfig(window=WINDOW, grace=timedelta(minutes=1))).run_due(
        now=T0 + 2 * WINDOW
    )

    lines = [r for r in caplog.records if r.name == "monitor.jobs.analysis"]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert re.match(expected, lines[0].getMessage()), lines[0].getMessage()
    assert lines[0].__dict__["records"] == 8 * 300


def test_a_health_run_logs_what_changed_and_is_silent_when_nothing_did(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    rules = HealthRules(offline_after=timedelta(minutes=2))
    with begin_write(engine) as conn:
        node = nodes.add_node(conn, "cam-1")[0]
        nodes.add_node(conn, "cam-2")
        heartbeats.record_heartbeat(
            conn, node_id=node.id, ts=now, model_version_id=None, sdk={}, runtime=None
        )
    caplog.set_level(logging.INFO, logger="monitor.jobs.health")

    def told(at: datetime) -> list[str]:
        caplog.clear()
        with begin_write(engine) as conn:
            check_fleet(conn, rules, now=at)
        return [r.getMessage() for r in caplog.records if r.name == "monitor.jobs.health"]

    assert told(now) == ["node health: cam-1 online, cam-2 silent; fleet: 1 online, 1 silent"]
    assert told(now) == []
    assert told(now + timedelta(minutes=5)) == [
        "node health: cam-1 online -> offline; fleet: 1 offline, 1 silent"
    ]
