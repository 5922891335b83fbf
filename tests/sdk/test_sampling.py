"""Sampling: deterministic by request id, at the configured rate."""

from __future__ import annotations

import math
import random
import uuid

import pytest

from monitor.sdk.sampling import is_sampled, sample_point


def test_same_request_id_same_decision() -> None:
    ids = [uuid.uuid4().hex for _ in range(200)]
    first = [is_sampled(i, 0.5) for i in ids]
    assert [is_sampled(i, 0.5) for i in ids] == first
    assert all(0.0 <= sample_point(i) < 1.0 for i in ids)


def test_decision_is_a_threshold_on_a_fixed_point() -> None:
    # A request kept at some rate is kept at every higher rate.
    for i in (uuid.uuid4().hex for _ in range(200)):
        point = sample_point(i)
        assert is_sampled(i, min(1.0, point + 1e-9))
        assert not is_sampled(i, point)


def test_zero_and_one() -> None:
    assert not any(is_sampled(uuid.uuid4().hex, 0.0) for _ in range(100))
    assert all(is_sampled(uuid.uuid4().hex, 1.0) for _ in range(100))


@pytest.mark.parametrize("rate", [0.01, 0.3, 0.5, 0.9])
def test_rate_within_three_sigma(rate: float) -> None:
    # Seeded ids keep the test deterministic (random ones would fail 0.3% of runs by design).
    rng = random.Random(2024)
    n = 20_000
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(n)]
    kept = sum(is_sampled(i, rate) for i in ids)
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(kept - n * rate) <= 3 * sigma


def test_sequential_ids_are_sampled_at_the_rate_too() -> None:
    # Request ids from a counter must not defeat the hash.
    n = 20_000
    kept = sum(is_sampled(f"req-{i}", 0.25) for i in range(n))
    assert abs(kept - n * 0.25) <= 3 * math.sqrt(n * 0.25 * 0.75)


def test_non_ascii_and_surrogate_ids_do_not_fail() -> None:
    assert isinstance(is_sampled("ünïcode-☃", 0.5), bool)
    assert isinstance(is_sampled("\ud800lone", 0.5), bool)
