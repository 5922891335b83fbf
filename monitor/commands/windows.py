"""Window policy commands: read and set how a model's records are cut into analysis windows.

The CLI (`edge-monitor models window`) and the admin API (`/v1/admin/models/{model}/window`)
both come here, so they accept and refuse the same values with the same messages. The policies
and how a change takes over are described in ``monitor.storage.policies``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from monitor.errors import ValidationFailed
from monitor.storage import policies
from monitor.storage.engine import begin_write
from monitor.storage.models import get_model
from monitor.storage.policies import Calendar, Fixed, Policy, Rows

#: The ways to name a policy; exactly one is given.
CHOICES = ("every", "calendar", "rows", "default")


@dataclass(frozen=True, slots=True)
class PolicyView:
    """A model's current window policy as a user sees it."""

    model: str
    policy: Policy
    #: The settings' default (no policy of its own).
    default: bool
    #: When it took over: None from the model's first record.
    since: datetime | None

    def describe(self) -> str:
        text = self.policy.describe()
        return f"{text} (the default)" if self.default else text

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": self.policy.kind,
            "description": self.describe(),
            "default": self.default,
            "since": None if self.since is None else self.since.isoformat(),
            "policy": self.policy.to_json(),
        }


def policy_from_request(
    *,
    every: str | None = None,
    calendar: str | None = None,
    timezone: str | None = None,
    rows: int | None = None,
    origin: str | None = None,
    default: bool = False,
) -> Policy | None:
    """The policy a user asked for (None: back to the settings' default). Refuses, naming the
    field, anything but exactly one of every / calendar / rows / default, a time zone without a
    calendar, an origin without every, and values out of bounds."""
    given = [
        name
        for name, value in zip(CHOICES, (every, calendar, rows, default or None), strict=True)
        if value is not None
    ]
    if len(given) != 1:
        named = " and ".join(given) if given else "none"
        raise _invalid(
            given[-1] if given else "every",
            f"give exactly one of every, calendar, rows or default (got {named})",
        )
    if timezone is not None and calendar is None:
        raise _invalid("timezone", "a time zone goes with calendar windows only")
    if origin is not None and every is None:
        raise _invalid("origin", "an origin goes with fixed windows (every) only")
    if every is not None:
        minutes = policies.parse_every(every)
        start = policies.parse_origin(origin) if origin is not None else policies.EPOCH
        return Fixed(timedelta(minutes=minutes), start)
    if calendar is not None:
        unit = policies.check_unit(calendar)
        return Calendar(unit, policies.check_timezone(timezone or "UTC"))
    if rows is not None:
        return Rows(policies.check_rows(rows))
    return None


def window_policy(engine: Engine, name: str, default: timedelta) -> PolicyView:
    """The model's current window policy; ``default`` is the settings' window length."""
    with engine.connect() as conn:
        model = get_model(conn, name)
        schedule = policies.read_schedule(conn, model.id)
    return _view(name, schedule, default)


def set_window_policy(
    engine: Engine, name: str, policy: Policy | None, default: timedelta
) -> PolicyView:
    """Give the model ``policy`` (None: the settings' default). It takes over at the end of
    the model's last analysed window (from the first record when none was analysed): stored
    results keep their windows. Setting the current policy again changes nothing."""
    with begin_write(engine) as conn:
        model = get_model(conn, name)
        schedule = policies.read_schedule(conn, model.id)
        changed = schedule.changed(policy, policies.last_analysed_end(conn, model.id))
        if changed != schedule:
            policies.write_schedule(conn, model.id, changed)
    return _view(name, changed, default)


def _view(name: str, schedule: policies.Schedule, default: timedelta) -> PolicyView:
    current = schedule.spans(default)[-1]
    return PolicyView(name, current.policy, current.default, current.since)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}",
        code="invalid_value",
        details=[{"code": "invalid_value", "field": field, "message": message}],
    )
