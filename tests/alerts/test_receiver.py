"""The built-in receiver: verifies, answers 204 or 401, reports each webhook-id once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from monitor.alerts import signing
from monitor.alerts.receiver import Received, Receiver

SECRET = signing.new_secret()


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def receiver(lines: list[str]) -> Iterator[Receiver]:
    with Receiver(SECRET, on_message=lambda m: lines.append(m.line())) as running:
        yield running


def _post(receiver: Receiver, message_id: str, payload: object, secret: str = SECRET) -> int:
    body = json.dumps(payload).encode()
    headers = signing.headers(secret, message_id, int(time.time()), body)
    return httpx.post(receiver.url, content=body, headers=headers).status_code


def test_a_verified_message_is_acknowledged_and_printed_once(
    receiver: Receiver, lines: list[str]
) -> None:
    fired = {"type": "alert.fired", "text": "12 nodes at site A drift on vibration"}
    assert _post(receiver, "msg_1", fired) == 204
    assert _post(receiver, "msg_1", fired) == 204  # a retry whose first answer was lost
    assert lines == [
        'webhook received and verified: alert.fired "12 nodes at site A drift on vibration" (msg_1)'
    ]
    assert [m.message_id for m in receiver.received] == ["msg_1"]
    assert receiver.received[0].payload == fired
    assert receiver.deliveries == 2


def test_a_bad_signature_is_refused_and_not_reported(receiver: Receiver, lines: list[str]) -> None:
    assert _post(receiver, "msg_forged", {"type": "alert.fired"}, signing.new_secret()) == 401
    body = b'{"type": "alert.fired"}'
    assert httpx.post(receiver.url, content=body).status_code == 401  # no headers at all
    stale = signing.headers(SECRET, "msg_old", int(time.time()) - 3600, body)
    assert httpx.post(receiver.url, content=body, headers=stale).status_code == 401
    assert lines == [] and receiver.received == []
    assert receiver.rejected == 3


def test_a_receiver_that_is_down_answers_503_and_takes_the_message_when_back(
    receiver: Receiver, lines: list[str]
) -> None:
    receiver.down = True
    assert _post(receiver, "msg_2", {"type": "alert.resolved", "text": "back"}) == 503
    receiver.down = False
    assert _post(receiver, "msg_2", {"type": "alert.resolved", "text": "back"}) == 204
    assert len(lines) == 1


def test_a_closed_receiver_frees_its_port() -> None:
    first = Receiver(SECRET).start()
    port = first.port
    first.close()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/", content=b"{}")
    with Receiver(SECRET, port=port) as again:
        assert again.port == port


def test_a_message_without_text_is_shown_by_its_type() -> None:
    message = Received("msg_3", 0, b'{"type": "webhook.test"}', {"type": "webhook.test"})
    assert message.line() == 'webhook received and verified: webhook.test "webhook.test" (msg_3)'
    assert Received("msg_4", 0, b"[]", []).event_type == "?"


def test_a_malformed_secret_is_refused_at_once() -> None:
    with pytest.raises(signing.SignatureError):
        Receiver("whsec_")
