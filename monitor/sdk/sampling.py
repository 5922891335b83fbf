"""Deterministic sampling by request id, so a label always follows its record's decision."""

from __future__ import annotations

from hashlib import blake2b

_SCALE = float(2**64)


def sample_point(request_id: str) -> float:
    """Where ``request_id`` falls in [0, 1): the first 8 bytes of its BLAKE2b hash / 2**64."""
    digest = blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def is_sampled(request_id: str, rate: float) -> bool:
    """True if a record with ``request_id`` is kept at sampling ``rate`` (0 keeps none, 1 all)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return sample_point(request_id) < rate
