"""`edge-monitor webhooks ...`: add, list, test, the delivery log, enable/disable, remove, and
the built-in receiver; errors are one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from monitor.alerts import signing
from monitor.alerts.receiver import Receiver
from monitor.cli import main
from monitor.storage import webhooks

SECRET = signing.new_secret()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("MONITOR_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
    with Receiver(SECRET) as running:
        yield running


def test_add_test_and_read_the_delivery_log(
    db_url: str, engine: Engine, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    run = lambda *args: main(["--database-url", db_url, "webhooks", *args])  # noqa: E731
    assert run("add", "ops", receiver.url, "--secret", SECRET, "--description", "on call") == 0
    assert capsys.readouterr().out == f"endpoint ops added: {receiver.url}\n"
    assert run("list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == [
        "NAME",
        "URL",
        "STATE",
        "FAILING",
        "SINCE",
        "SOURCE",
        "DESCRIPTION",
    ]
    assert listed[1].split() == ["ops", receiver.url, "enabled", "-", "cli", "on", "call"]

    assert run("test", "ops") == 0
    out = capsys.readouterr().out
    assert out.startswith("webhook.test to ops: delivered, HTTP 204 in ")
    (message,) = receiver.received
    assert message.message_id in out and message.event_type == "webhook.test"

    assert run("deliveries", "--endpoint", "ops", "--status", "delivered") == 0
    log = capsys.readouterr().out.splitlines()
    assert len(log) == 2 and message.message_id in log[1] and "HTTP 204" in log[1]


def test_a_generated_secret_is_printed_once(
    db_url: str, engine: Engine, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    run = lambda *args: main(["--database-url", db_url, "webhooks", *args])  # noqa: E731
    assert run("add", "ops", receiver.url) == 0
    out = capsys.readouterr().out.splitlines()
    secret = out[1].removeprefix("secret: ")
    assert signing.check_secret(secret) is None
    with engine.connect() as conn:
        stored = webhooks.endpoint_by_name(conn, "ops")
    assert stored is not None and stored.secret == secret
    assert run("add", "ops", receiver.url + "v2") == 0
    assert capsys.readouterr().out == f"endpoint ops changed: {receiver.url}v2\n"


def test_disable_enable_and_remove(
    db_url: str, engine: Engine, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    run = lambda *args: main(["--database-url", db_url, "webhooks", *args])  # noqa: E731
    assert run("add", "ops", receiver.url, "--secret", SECRET) == 0
    assert run("disable", "ops") == 0
    assert run("list") == 0
    assert "disabled (disabled by hand)" in capsys.readouterr().out
    assert run("enable", "ops") == 0
    assert run("remove", "ops") == 0
    out = capsys.readouterr().out
    assert "endpoint ops enabled\n" in out and out.endswith("endpoint ops removed\n")
    assert run("list") == 0
    assert capsys.readouterr().out.startswith("no webhook endpoints")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["add", "meta", "http://169.254.169.254/latest"],
            "invalid endpoint: url: 169.254.169.254 is a link-local address; "
            "allow it with MONITOR_WEBHOOK_ALLOWED_NETWORKS",
        ),
        (
            ["add", "lan", "http://10.0.0.1/"],
            "invalid endpoint: url: 10.0.0.1 is a private address; "
            "allow it with MONITOR_WEBHOOK_ALLOWED_NETWORKS",
        ),
        (
            ["add", "ops", "https://93.184.216.34/", "--secret", "hunter2"],
            'invalid endpoint: secret: the secret does not start with "whsec_"',
        ),
        (["remove", "nobody"], "no webhook endpoint named 'nobody'"),
        (["test", "nobody"], "no webhook endpoint named 'nobody'"),
        (["deliveries", "--endpoint", "nobody"], "no webhook endpoint named 'nobody'"),
    ],
)
def test_refusals_are_one_line(
    db_url: str,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert main(["--database-url", db_url, "webhooks", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"edge-monitor: error: {message}")
    assert err.count("\n") == 1


def test_a_failed_test_exits_non_zero(
    db_url: str, engine: Engine, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    run = lambda *args: main(["--database-url", db_url, "webhooks", *args])  # noqa: E731
    assert run("add", "ops", receiver.url, "--secret", SECRET) == 0
    receiver.status = 503
    assert run("test", "ops") == 1
    assert capsys.readouterr().err == "edge-monitor: error: webhook.test to ops failed: HTTP 503\n"
    receiver.close()
    assert run("test", "ops") == 1
    assert "failed: no answer (cannot connect to 127.0.0.1" in capsys.readouterr().err


def test_the_receiver_prints_each_verified_message_once_until_interrupted(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from monitor.cli import main; sys.exit(main(sys.argv[1:]))",
            "webhooks",
            "receive",
            "--port",
            str(port),
            "--secret-file",
            str(secret_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first == f"receiving webhooks on http://127.0.0.1:{port}/ (Ctrl-C to stop)\n"
        body = json.dumps({"type": "alert.fired", "text": "site A drifts"}).encode()
        headers = signing.headers(SECRET, "msg_cli", int(time.time()), body)
        url = f"http://127.0.0.1:{port}/"
        assert httpx.post(url, content=body, headers=headers).status_code == 204
        assert httpx.post(url, content=body, headers=headers).status_code == 204
        forged = signing.headers(signing.new_secret(), "msg_forged", int(time.time()), body)
        assert httpx.post(url, content=body, headers=forged).status_code == 401
        process.send_signal(signal.SIGINT)
        out, _err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert out == 'webhook received and verified: alert.fired "site A drifts" (msg_cli)\n'


def test_the_receiver_wants_a_good_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["webhooks", "receive", "--secret", "whsec_abc"]) == 2
    assert "--secret: the secret holds" in capsys.readouterr().err
