"""Webhook endpoint commands: add, list, enable/disable, remove, test, and the delivery log.

The CLI (`edge-monitor webhooks ...`) and the admin API (`/v1/admin/webhooks`) both come here,
so they accept and refuse the same values with the same messages. An endpoint's section is
checked by the rules file's ``check_endpoint`` (one rule for a file, the CLI and the API), and
its URL against the allowed networks when it is stored; the delivery job checks it again at
every delivery, since a name's addresses may change.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from monitor.alerts import delivery, rulesfile, signing, targets
from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage import webhooks
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow

DEFAULT_DELIVERIES = 50
MAX_DELIVERIES = 1000
TEST_EVENT = "webhook.test"


@dataclass(frozen=True)
class Added:
    """An endpoint as stored, with its secret when it was generated (shown this once)."""

    endpoint: webhooks.Endpoint
    created: bool
    generated_secret: str | None


@dataclass(frozen=True)
class Tested:
    """How a test message went."""

    endpoint: str
    message_id: str
    outcome: delivery.Outcome


def unknown(name: str) -> NotFound:
    """The error for an endpoint that does not exist."""
    return NotFound(
        f'no webhook endpoint named {name!r} (add it with "edge-monitor webhooks add")',
        code="unknown_endpoint",
    )


def _invalid(
    problems: Sequence[tuple[str, str]], *, code: str = "invalid_field"
) -> ValidationFailed:
    return ValidationFailed(
        "invalid endpoint: " + "; ".join(f"{where}: {message}" for where, message in problems),
        code="refused_target" if code == "refused_target" else None,
        details=[{"code": code, "field": f, "message": m} for f, m in problems],
    )


def add_endpoint(
    engine: Engine,
    name: str,
    url: str,
    *,
    secret: str | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    allowed_networks: Sequence[str] = (),
    source: str = "cli",
    now: datetime | None = None,
) -> Added:
    """Create endpoint ``name``, or change its URL, secret, description or state.

    A secret not given is generated for a new endpoint and kept for an existing one; a
    description or state not given is kept (new: "" and enabled). Refuses (422, field paths) a
    bad section and a URL on a refused address (``refused_target``); an endpoint defined by the
    rules file is changed there (409).
    """
    section: dict[str, Any] = {"name": name, "url": url}
    if secret is not None:
        section["secret"] = secret
    if description is not None:
        section["description"] = description
    if enabled is not None:
        section["enabled"] = enabled
    problems = [
        (where.removeprefix("endpoint."), m) for where, m in rulesfile.check_endpoint(section)
    ]
    if problems:
        raise _invalid(problems)
    if (why := targets.refusal(url, allowed_networks)) is not None:
        raise _invalid([("url", why)], code="refused_target")
    resolved = None if secret is None else rulesfile.resolve_secret(secret)
    now = now or utcnow()
    with begin_write(engine) as conn:
        before = webhooks.endpoint_by_name(conn, name)
        if before is not None and before.source == "file":
            raise Conflict(
                f"endpoint {name!r} is defined by the rules file; change it there",
                code="defined_by_file",
            )
        generated = signing.new_secret() if resolved is None and before is None else None
        endpoint = webhooks.upsert_endpoint(
            conn,
            name=name,
            url=url,
            secret=resolved or generated or (before.secret if before else ""),
            description=description
            if description is not None
            else (before.description if before else ""),
            enabled=enabled if enabled is not None else (before.enabled if before else True),
            source=source,
            now=now,
        )
    return Added(endpoint=endpoint, created=before is None, generated_secret=generated)


def list_endpoints(engine: Engine) -> list[webhooks.Endpoint]:
    """Every endpoint, by name."""
    with engine.connect() as conn:
        return webhooks.list_endpoints(conn)


def get_endpoint(engine: Engine, name: str) -> webhooks.Endpoint:
    """One endpoint (NotFound ``unknown_endpoint``)."""
    with engine.connect() as conn:
        endpoint = webhooks.endpoint_by_name(conn, name)
    if endpoint is None:
        raise unknown(name)
    return endpoint


def remove_endpoint(engine: Engine, name: str) -> None:
    """Delete an endpoint with its outbox and delivery log (NotFound ``unknown_endpoint``)."""
    with begin_write(engine) as conn:
        if not webhooks.delete_endpoint(conn, name):
            raise unknown(name)


def set_enabled(
    engine: Engine, name: str, enabled: bool, *, now: datetime | None = None
) -> webhooks.Endpoint:
    """Enable an endpoint (clearing why it was off) or disable it (dropping what it has not
    delivered); NotFound ``unknown_endpoint``."""
    with begin_write(engine) as conn:
        endpoint = webhooks.set_enabled(conn, name, enabled, now=now or utcnow())
    if endpoint is None:
        raise unknown(name)
    return endpoint


def probe_body(name: str, *, now: datetime) -> bytes:
    """The ``webhook.test`` payload sent to endpoint ``name``."""
    payload = {
        "type": TEST_EVENT,
        "timestamp": now.isoformat(),
        "data": {"endpoint": name},
        "text": f"Test message from edge-monitor to the webhook endpoint {name}.",
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def send_test(
    engine: Engine,
    name: str,
    *,
    allowed_networks: Sequence[str],
    timeout: float,
    now: datetime | None = None,
) -> Tested:
    """Send a signed ``webhook.test`` message to ``name`` now (not through the outbox) and log it
    in the delivery log. A disabled endpoint is tested too: that is how one checks it is back.
    Raises 404 for an unknown endpoint and 422 ``refused_target`` for a refused address."""
    endpoint = get_endpoint(engine, name)
    try:
        target = targets.check_target(endpoint.url, allowed_networks)
    except (targets.RefusedTarget, ValueError) as exc:
        raise _invalid([("url", str(exc))], code="refused_target") from None
    now = now or utcnow()
    message_id = f"msg_{uuid.uuid4().hex}"
    body = probe_body(name, now=now)
    outcome = delivery.send(
        target, secret=endpoint.secret, message_id=message_id, body=body, timeout=timeout
    )
    with begin_write(engine) as conn:
        webhooks.log_sent(
            conn,
            endpoint.id,
            message_id=message_id,
            event_type=TEST_EVENT,
            body=body,
            delivered=outcome.delivered,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            retry_after_seconds=outcome.retry_after_seconds,
            now=now,
        )
    return Tested(endpoint=name, message_id=message_id, outcome=outcome)


def deliveries(
    engine: Engine,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    limit: int = DEFAULT_DELIVERIES,
) -> list[webhooks.Delivery]:
    """The delivery log, newest first; an unknown endpoint or status is refused."""
    if status is not None and status not in webhooks.STATUSES:
        raise ValidationFailed(
            f"status: must be one of {', '.join(webhooks.STATUSES)}",
            details=[
                {
                    "code": "invalid_value",
                    "field": "status",
                    "message": f"must be one of {', '.join(webhooks.STATUSES)}",
                }
            ],
        )
    if not 1 <= limit <= MAX_DELIVERIES:
        raise ValidationFailed(
            f"limit: must be 1 to {MAX_DELIVERIES}",
            details=[
                {"code": "invalid_value", "field": "limit", "message": f"1 to {MAX_DELIVERIES}"}
            ],
        )
    with engine.connect() as conn:
        if endpoint is not None and webhooks.endpoint_by_name(conn, endpoint) is None:
            raise unknown(endpoint)
        return webhooks.delivery_log(conn, endpoint=endpoint, status=status, limit=limit)


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def endpoint_json(endpoint: webhooks.Endpoint, *, secret: str | None = None) -> dict[str, Any]:
    """An endpoint as the API answers it: never its secret, unless just generated."""
    document: dict[str, Any] = {
        "name": endpoint.name,
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": _when(endpoint.failing_since),
        "source": endpoint.source,
        "created_at": endpoint.created_at.isoformat(),
        "updated_at": endpoint.updated_at.isoformat(),
    }
    if secret is not None:
        document["secret"] = secret
    return document


def delivery_json(entry: webhooks.Delivery) -> dict[str, Any]:
    """One message of the delivery log with its attempts."""
    message = entry.message
    return {
        "endpoint": message.endpoint,
        "message_id": message.message_id,
        "event_type": message.event_type,
        "status": message.status,
        "attempts": message.attempts,
        "created_at": message.created_at.isoformat(),
        "next_attempt_at": (
            message.next_attempt_at.isoformat() if message.status == "pending" else None
        ),
        "delivered_at": _when(message.delivered_at),
        "last_error": message.last_error,
        "tries": [
            {
                "attempt": a.attempt,
                "at": a.at.isoformat(),
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
                "retry_after_seconds": a.retry_after_seconds,
            }
            for a in entry.attempts
        ],
    }


def tested_json(tested: Tested) -> dict[str, Any]:
    """How a test message went, as the API answers it."""
    outcome = tested.outcome
    return {
        "endpoint": tested.endpoint,
        "message_id": tested.message_id,
        "delivered": outcome.delivered,
        "result": outcome.result,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "duration_ms": outcome.duration_ms,
    }
