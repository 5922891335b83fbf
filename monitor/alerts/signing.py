"""Standard Webhooks signatures: secrets, signing, the headers we send, and verification."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A message whose headers or signature do not verify (says which and why)."""


def new_secret(nbytes: int = 24) -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of ``nbytes`` (24 to 64) random bytes."""
    if not 24 <= nbytes <= 64:
        raise ValueError("a webhook secret has 24 to 64 random bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: the bytes base64-encoded after ``whsec_``."""
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        # The spec's secrets may come unpadded; extra padding is ignored by the decoder.
        key = base64.b64decode(raw + "==", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the secret is not whsec_ followed by base64") from exc
    if not key:
        raise SignatureError("the secret is empty")
    return key


def check_secret(secret: str) -> str | None:
    """Why ``secret`` is not a usable ``whsec_`` secret, or None when it is."""
    if not secret.startswith(SECRET_PREFIX):
        return "must start with whsec_"
    raw = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "must be whsec_ followed by base64"
    if not 24 <= len(key) <= 64:
        return f"must hold 24 to 64 bytes after whsec_ (this one holds {len(key)})"
    return None


def _digest(secret: str, message_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return hmac.new(secret_key(secret), signed, hashlib.sha256).digest()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    digest = _digest(secret, message_id, int(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one signed delivery (Standard Webhooks names, JSON body)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secret, message_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check one received message; returns its ``webhook-id`` or raises SignatureError.

    ``webhook-signature`` may list several space-separated signatures (a secret being rotated);
    one matching ``v1`` signature is enough. The timestamp must lie within ``tolerance`` seconds
    of ``now`` either way, so a captured message cannot be replayed later.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    missing = [
        name
        for name, value in (
            ("webhook-id", message_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", signatures),
        )
        if not value
    ]
    if missing or message_id is None or stamp is None or signatures is None:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise SignatureError(f"webhook-timestamp {stamp!r} is not whole Unix seconds") from exc
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise SignatureError(f"message timestamp too old ({int(current - timestamp)} s ago)")
    if timestamp > current + tolerance:
        raise SignatureError(f"message timestamp too new ({int(timestamp - current)} s ahead)")
    expected = _digest(secret, message_id, timestamp, body)
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, candidate):
            return message_id
    raise SignatureError("no matching v1 signature")
