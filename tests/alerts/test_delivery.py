"""One delivery: signed, pinned to the checked address, and judged by the receiver's answer."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from monitor.alerts import delivery, signing
from monitor.alerts.delivery import parse_retry_after, send
from monitor.alerts.receiver import Receiver
from monitor.alerts.targets import Target, check_target

SECRET = signing.new_secret()
LOOPBACK = ["127.0.0.0/8", "::1/128"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as running:
        yield running


def _send(target: Target, message_id: str = "msg_1", timeout: float = 5.0) -> delivery.Outcome:
    return send(target, secret=SECRET, message_id=message_id, body=b'{"a": 1}', timeout=timeout)


def test_a_message_goes_to_the_checked_address_with_the_host_it_was_given_for(
    receiver: Receiver,
) -> None:
    # "localhost" may resolve to ::1 first, where the receiver does not listen: the next checked
    # address is tried, and the Host header still names localhost.
    target = check_target(f"http://localhost:{receiver.port}/hook?x=1", LOOPBACK)
    outcome = _send(target)
    assert outcome.result == delivery.DELIVERED and outcome.status_code == 204
    (message,) = receiver.received
    assert message.headers["host"] == f"localhost:{receiver.port}"
    assert message.headers["webhook-id"] == "msg_1"
    assert message.headers["user-agent"].startswith("edge-monitor-webhooks/")


def test_a_pinned_address_is_used_even_when_the_name_now_points_elsewhere(
    receiver: Receiver,
) -> None:
    # A target checked when it resolved to the receiver: the connection goes there, not to a
    # second lookup of the name (which could have been rebound to an internal address).
    target = Target(
        url=f"http://rebound.invalid:{receiver.port}/",
        scheme="http",
        host="rebound.invalid",
        port=receiver.port,
        addresses=("127.0.0.1",),
    )
    assert _send(target).delivered
    assert receiver.received[0].headers["host"] == f"rebound.invalid:{receiver.port}"


@pytest.mark.parametrize(
    ("status", "headers", "result"),
    [
        (301, {"location": "https://example.com/"}, delivery.RETRY),
        (410, {}, delivery.GONE),
        (429, {"retry-after": "30"}, delivery.RETRY),
        (500, {}, delivery.RETRY),
    ],
)
def test_what_is_not_2xx_is_not_delivered(
    receiver: Receiver, status: int, headers: dict[str, str], result: str
) -> None:
    receiver.status = status
    receiver.answer_headers = headers
    outcome = _send(check_target(receiver.url, LOOPBACK))
    assert (outcome.result, outcome.status_code) == (result, status)
    assert outcome.error is not None and outcome.error.startswith(f"HTTP {status}")
    if status == 301:
        assert "redirects are not followed (to https://example.com/)" in outcome.error
    if status == 429:
        assert outcome.retry_after_seconds == 30.0


def test_a_receiver_that_does_not_answer_in_time_is_a_timeout(receiver: Receiver) -> None:
    receiver.stall_seconds = 5.0
    outcome = _send(check_target(receiver.url, LOOPBACK), timeout=0.3)
    assert outcome.result == delivery.RETRY and outcome.status_code is None
    assert outcome.error == "timed out after 0.3 s"


def test_retry_after_is_seconds_or_an_http_date_capped_at_a_day() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Sun, 01 Mar 2026 12:10:00 GMT", now=now) == 600.0
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("999999") == 86400.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _certificate(tmp_path: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (its own CA), as PEM files: cert, key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_to_a_pinned_address_checks_the_certificate_of_the_host_name(
    tmp_path: Path,
) -> None:
    cert_file, key_file = _certificate(tmp_path, "hooks.test")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    receiver = Receiver(SECRET)
    receiver._server.socket = server_side.wrap_socket(receiver._server.socket, server_side=True)
    with receiver:
        target = Target(
            url=f"https://hooks.test:{receiver.port}/hook",
            scheme="https",
            host="hooks.test",
            port=receiver.port,
            addresses=("127.0.0.1",),
        )
        outcome = send(
            target, secret=SECRET, message_id="msg_tls", body=b"{}", timeout=5, tls=trusting
        )
        assert outcome.delivered, outcome.error
        assert receiver.received[0].headers["host"] == f"hooks.test:{receiver.port}"
        # The same address under another name: its certificate does not match, so no delivery.
        other = Target(
            **{
                **target.__dict__,
                "url": f"https://other.test:{receiver.port}/",
                "host": "other.test",
            }
        )
        refused = send(
            other, secret=SECRET, message_id="msg_x", body=b"{}", timeout=5, tls=trusting
        )
        assert refused.result == delivery.RETRY and "certificate" in (refused.error or "").lower()
