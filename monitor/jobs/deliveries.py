"""The delivery job: sends due outbox messages, retries on a schedule, disables dead endpoints.

Each message is claimed in a short transaction, sent with no transaction open, and its outcome
recorded in another: a slow receiver never holds a database lock. The claim lasts twice the
delivery timeout; a worker killed mid-delivery leaves it to expire, and the next run (of any
worker) claims the message again. Receivers deduplicate by ``webhook-id``, which is the same
on every attempt.

Retries after a failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (each ±20% jitter, so
that many messages failing together do not come back together); a longer Retry-After from the
receiver replaces the wait (capped at 24 h). After the last one the message is ``failed``.
When an endpoint does not answer at all, its other due messages wait with the one that failed
(a dead endpoint costs one timeout per pass, not one per message).
A 410 disables the endpoint at once; so does failing continuously for
``webhook_disable_after_days``. Disabling drops the endpoint's undelivered messages.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from monitor.alerts import delivery, targets
from monitor.alerts.delivery import Outcome
from monitor.config import Settings
from monitor.jobs.owner import process_owner
from monitor.storage import webhooks
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow

log = logging.getLogger(__name__)

#: Waits after the 1st, 2nd, ... failed attempt; one more failure after the last gives up.
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
JITTER = 0.2
MAX_WAIT = timedelta(hours=24)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1


def retry_wait(
    attempt: int,
    retry_after_seconds: float | None = None,
    *,
    rand: Callable[[float, float], float] = random.uniform,
) -> timedelta | None:
    """How long to wait after failed attempt number ``attempt`` (1-based); None: give up.

    The schedule's wait with ±20% jitter, or the receiver's Retry-After when that is longer
    (capped at 24 h).
    """
    if attempt >= MAX_ATTEMPTS:
        return None
    base = RETRY_SCHEDULE[attempt - 1].total_seconds()
    wait = timedelta(seconds=base * rand(1 - JITTER, 1 + JITTER))
    if retry_after_seconds is not None:
        asked = min(timedelta(seconds=retry_after_seconds), MAX_WAIT)
        wait = max(wait, asked)
    return wait


def deliver_due(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime | None = None,
    owner: str | None = None,
    limit: int = 100,
) -> int:
    """Send up to ``limit`` due messages, one at a time; returns how many were attempted.

    ``now`` fixes the clock for claims, retries and the failing streak (tests); the
    ``webhook-timestamp`` of what is sent is always the real time, as receivers check it.
    """
    owner = owner or process_owner()
    lease = timedelta(seconds=2 * settings.webhook_timeout_seconds)
    attempted = 0
    while attempted < limit:
        claimed_at = now or utcnow()
        with begin_write(engine) as conn:
            claimed = webhooks.claim_due(conn, owner=owner, now=claimed_at, lease=lease, limit=1)
        if not claimed:
            break
        attempted += 1
        claim = claimed[0]
        outcome = _send(claim, settings)
        _record(engine, claim, outcome, owner=owner, settings=settings, now=now or utcnow())
    return attempted


def _send(claim: webhooks.Claimed, settings: Settings) -> Outcome:
    """Check the target again (its DNS may have changed since it was added), then send."""
    try:
        target = targets.check_target(claim.url, settings.webhook_allowed_networks)
    except (targets.RefusedTarget, ValueError) as exc:
        return Outcome(delivery.RETRY, None, f"refused target: {exc}", 0.0)
    return delivery.send(
        target,
        secret=claim.secret,
        message_id=claim.message.message_id,
        body=claim.message.body,
        timeout=settings.webhook_timeout_seconds,
    )


def _record(
    engine: Engine,
    claim: webhooks.Claimed,
    outcome: Outcome,
    *,
    owner: str,
    settings: Settings,
    now: datetime,
) -> None:
    message = claim.message
    attempt = message.attempts
    where = f"webhook {message.message_id} ({message.event_type}) to {message.endpoint}"
    with begin_write(engine) as conn:
        webhooks.record_attempt(
            conn,
            message.id,
            attempt=attempt,
            at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            retry_after_seconds=outcome.retry_after_seconds,
        )
        if outcome.result == delivery.DELIVERED:
            if webhooks.mark_delivered(conn, message.id, owner=owner, now=now):
                webhooks.note_success(conn, message.endpoint_id)
            log.info(
                "%s: delivered (HTTP %s, %.0f ms, attempt %d)",
                where,
                outcome.status_code,
                outcome.duration_ms,
                attempt,
            )
            return
        if outcome.result == delivery.GONE:
            dropped = webhooks.disable_endpoint(
                conn, message.endpoint_id, reason="the receiver answered 410 Gone", now=now
            )
            log.warning(
                "%s: 410 Gone; endpoint %s disabled, %d undelivered message(s) dropped",
                where,
                message.endpoint,
                dropped,
            )
            return
        since = webhooks.note_failure(conn, message.endpoint_id, now=now) or now
        failing_for = now - since
        limit = timedelta(days=settings.webhook_disable_after_days)
        if failing_for >= limit:
            reason = f"every delivery failed for {failing_for.total_seconds() / 86400:.1f} days"
            dropped = webhooks.disable_endpoint(conn, message.endpoint_id, reason=reason, now=now)
            log.warning(
                "%s: %s; endpoint %s disabled (%s), %d undelivered message(s) dropped",
                where,
                outcome.error,
                message.endpoint,
                reason,
                dropped,
            )
            return
        wait = (
            None
            if outcome.result == delivery.FAILED
            else retry_wait(attempt, outcome.retry_after_seconds)
        )
        if wait is None:
            webhooks.mark_failed(
                conn,
                message.id,
                owner=owner,
                error=f"gave up after {attempt} attempt(s): {outcome.error}",
            )
            log.warning("%s: %s; gave up after %d attempt(s)", where, outcome.error, attempt)
            return
        webhooks.schedule_retry(conn, message.id, owner=owner, at=now + wait, error=outcome.error)
        held = 0
        if outcome.status_code is None:
            # No answer at all (down, unreachable, timed out): the endpoint's other due messages
            # wait with this one instead of each waiting out the same timeout now.
            held = webhooks.hold_pending(conn, message.endpoint_id, until=now + wait)
        log.warning(
            "%s: %s; attempt %d failed, retry in %.0f s%s",
            where,
            outcome.error,
            attempt,
            wait.total_seconds(),
            f" ({held} other message(s) of the endpoint wait with it)" if held else "",
        )
