"""Standard Webhooks signatures: the published test vector, and the official library agrees."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from monitor.alerts import signing
from monitor.alerts.signing import SignatureError

# The Standard Webhooks test vector, shared by the official libraries' tests; the content signed
# is "{msg_id}.{timestamp}.{payload}" (spec/standard-webhooks.md, "Signature scheme").
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_published_test_vector_reproduces_exactly() -> None:
    assert signing.sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_official_library_signs_the_vector_the_same_way() -> None:
    when = datetime.fromtimestamp(SPEC_TIMESTAMP, tz=UTC)
    assert Webhook(SPEC_SECRET).sign(SPEC_ID, when, SPEC_BODY.decode()) == SPEC_SIGNATURE


def test_the_vector_verifies_at_its_own_time_and_not_a_day_later() -> None:
    headers = signing.headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert signing.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10) == SPEC_ID
    with pytest.raises(SignatureError, match="too old"):
        signing.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 86400)
    with pytest.raises(SignatureError, match="too new"):
        signing.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP - 301)


def test_our_messages_verify_with_the_official_library() -> None:
    secret = signing.new_secret()
    body = json.dumps({"type": "alert.fired", "text": "vibration drifts at site A"}).encode()
    headers = signing.headers(secret, "msg_abc", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["content-type"] == "application/json"
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_messages_signed_by_the_official_library_verify_with_ours() -> None:
    secret = signing.new_secret(32)
    body = b'{"type": "alert.resolved"}'
    now = int(time.time())
    signature = Webhook(secret).sign("msg_x", datetime.fromtimestamp(now, tz=UTC), body.decode())
    headers = {"Webhook-Id": "msg_x", "Webhook-Timestamp": str(now), "Webhook-Signature": signature}
    assert signing.verify(secret, headers, body) == "msg_x"


def test_one_matching_signature_among_several_is_enough() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = b"{}"
    headers = signing.headers(new, "msg_rotated", SPEC_TIMESTAMP, body)
    stale = signing.sign(old, "msg_rotated", SPEC_TIMESTAMP, body)
    headers["webhook-signature"] = f"v2,whatever {stale} {headers['webhook-signature']}"
    assert signing.verify(new, headers, body, now=SPEC_TIMESTAMP) == "msg_rotated"
    assert signing.verify(old, headers, body, now=SPEC_TIMESTAMP) == "msg_rotated"
    with pytest.raises(SignatureError, match="no matching v1 signature"):
        signing.verify(signing.new_secret(), headers, body, now=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": ""}, "missing header"),
        ({"webhook-timestamp": "soon"}, "not whole Unix seconds"),
        ({"webhook-signature": "v1,not-base64!"}, "no matching"),
        ({"webhook-id": "msg_other"}, "no matching"),
    ],
)
def test_a_tampered_message_is_refused_with_the_reason(change: dict[str, str], reason: str) -> None:
    headers = {**signing.headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), **change}
    with pytest.raises(SignatureError, match=reason):
        signing.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_a_new_secret_is_whsec_and_random_bytes() -> None:
    secrets = {signing.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
        assert signing.check_secret(secret) is None
    assert signing.check_secret("whsec_abc") is not None
    assert signing.check_secret("shh") == "must start with whsec_"
