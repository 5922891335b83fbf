"""Leases: one holder at a time, expired leases are taken over, completed work stays done."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import Engine

from monitor.storage import leases
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow

MINUTE = timedelta(minutes=1)
T0 = utcnow()


def claim(
    engine: Engine, key: str, owner: str, ttl: timedelta = MINUTE, now: datetime = T0
) -> bool:
    with begin_write(engine) as conn:
        return leases.claim(conn, key, owner, ttl, now)


def test_a_held_lease_cannot_be_claimed_by_another(engine: Engine) -> None:
    assert claim(engine, "drift:1:w1", "a")
    assert not claim(engine, "drift:1:w1", "b", now=T0 + MINUTE - timedelta(seconds=1))
    assert claim(engine, "drift:1:w2", "b")


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_complete(
    engine: Engine,
) -> None:
    assert claim(engine, "k", "a", MINUTE)

    assert claim(engine, "k", "b", now=T0 + MINUTE + timedelta(seconds=1))
    with begin_write(engine) as conn:
        assert not leases.complete(conn, "k", "a")
        assert leases.complete(conn, "k", "b")
        assert leases.lease_info(conn, "k")["attempts"] == 2


def test_completed_work_is_never_claimed_again(engine: Engine) -> None:
    assert claim(engine, "k", "a", MINUTE)
    with begin_write(engine) as conn:
        assert leases.complete(conn, "k", "a")

    assert not claim(engine, "k", "b", now=T0 + 10 * MINUTE)
    with begin_write(engine) as conn:
        assert leases.completed_keys(conn, "k") == {"k"}


def test_renewal_keeps_a_lease_alive(engine: Engine) -> None:
    assert claim(engine, "k", "a", MINUTE)
    with begin_write(engine) as conn:
        assert leases.renew(conn, "k", "a", MINUTE, now=T0 + timedelta(seconds=50))
        assert not leases.renew(conn, "k", "b", MINUTE, now=T0 + timedelta(seconds=50))

    assert not claim(engine, "k", "b", now=T0 + timedelta(seconds=100))
    assert claim(engine, "k", "b", now=T0 + timedelta(seconds=111))


def test_an_expired_lease_cannot_be_renewed(engine: Engine) -> None:
    assert claim(engine, "k", "a", MINUTE)
    with begin_write(engine) as conn:
        assert not leases.renew(conn, "k", "a", MINUTE, now=T0 + 2 * MINUTE)


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
