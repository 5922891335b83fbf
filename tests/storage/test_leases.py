"""Leases: one holder at a time, expired leases are taken over, completed work stays done."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine

from monitor.storage import leases
from monitor.storage.engine import begin_write

MINUTE = timedelta(minutes=1)


def claim(engine: Engine, key: str, owner: str, ttl: timedelta = MINUTE) -> bool:
    with begin_write(engine) as conn:
        return leases.claim(conn, key, owner, ttl)


def test_a_held_lease_cannot_be_claimed_by_another(engine: Engine) -> None:
    assert claim(engine, "drift:1:w1", "a")
    assert not claim(engine, "drift:1:w1", "b")
    assert claim(engine, "drift:1:w2", "b")


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_complete(
    engine: Engine,
) -> None:
    assert claim(engine, "k", "a", timedelta(milliseconds=50))
    time.sleep(0.1)

    assert claim(engine, "k", "b")
    with begin_write(engine) as conn:
        assert not leases.complete(conn, "k", "a")
        assert leases.complete(conn, "k", "b")
        assert leases.lease_info(conn, "k")["attempts"] == 2


def test_completed_work_is_never_claimed_again(engine: Engine) -> None:
    assert claim(engine, "k", "a", timedelta(milliseconds=10))
    with begin_write(engine) as conn:
        assert leases.complete(conn, "k", "a")
    time.sleep(0.05)

    assert not claim(engine, "k", "b")
    with begin_write(engine) as conn:
        assert leases.completed_keys(conn, "k") == {"k"}
        leases.forget(conn, "k")
    assert claim(engine, "k", "b")


def test_renewal_keeps_a_lease_alive(engine: Engine) -> None:
    assert claim(engine, "k", "a", timedelta(milliseconds=100))
    with begin_write(engine) as conn:
        assert leases.renew(conn, "k", "a", MINUTE)
        assert not leases.renew(conn, "k", "b", MINUTE)
    time.sleep(0.15)

    assert not claim(engine, "k", "b")


def test_racing_claimers_get_one_winner(engine: Engine) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def race(owner: str) -> None:
        barrier.wait()
        if claim(engine, "contested", owner):
            winners.append(owner)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(winners) == 1
