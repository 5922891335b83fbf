"""Alert rules as stored: rows of ``alert_rules`` to and from ``monitor.alerts.rules.Rule``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from monitor.alerts.rules import Rule, check
from monitor.errors import NotFound, ValidationFailed
from monitor.storage.tables import alert_rules, models


def upsert_rule(conn: Connection, rule: Rule, *, now: datetime) -> Rule:
    """Store ``rule`` under its name (replacing one of that name); the stored rule, with its id.

    Raises ValidationFailed (with field paths) for a rule ``check`` refuses and NotFound for a
    model that is not registered."""
    problems = check(rule)
    if problems:
        raise ValidationFailed(
            f"invalid alert rule {rule.name!r}: " + "; ".join(f"{f} {m}" for f, m in problems),
            details=[
                {"code": "invalid_field", "field": field, "message": message}
                for field, message in problems
            ],
        )
    model_id: int | None = None
    if rule.model is not None:
        model_id = conn.execute(select(models.c.id).where(models.c.name == rule.model)).scalar()
        if model_id is None:
            raise NotFound(
                f"no model {rule.model!r}",
                details=[{"code": "not_found", "field": "rule.model", "message": "no such model"}],
            )
    values: dict[str, Any] = {
        "model_id": model_id,
        "kind": rule.kind,
        "params": dict(rule.params),
        "scope": rule.scope,
        "scope_key": rule.scope_key,
        "group_by": rule.group_by,
        "fire_m": rule.fire_m,
        "fire_n": rule.fire_n,
        "resolve_m": rule.resolve_m,
        "resolve_n": rule.resolve_n,
        "cooldown_seconds": rule.cooldown_seconds,
        "severity": rule.severity,
        "endpoints": None if rule.endpoints is None else list(rule.endpoints),
        "hooks": list(rule.hooks),
        "enabled": rule.enabled,
        "source": rule.source,
        "updated_at": now,
    }
    existing = conn.execute(
        select(alert_rules.c.id).where(alert_rules.c.name == rule.name)
    ).scalar()
    if existing is None:
        conn.execute(insert(alert_rules).values(name=rule.name, created_at=now, **values))
    else:
        conn.execute(update(alert_rules).where(alert_rules.c.id == existing).values(**values))
    stored = rule_by_name(conn, rule.name)
    assert stored is not None
    return stored


def delete_rule(conn: Connection, name: str) -> bool:
    """Forget the rule ``name`` (its alerts and their history go with it); whether it existed."""
    return conn.execute(delete(alert_rules).where(alert_rules.c.name == name)).rowcount > 0


def rule_by_name(conn: Connection, name: str) -> Rule | None:
    row = conn.execute(_select().where(alert_rules.c.name == name)).first()
    return None if row is None else _rule(row)


def get_rule(conn: Connection, rule_id: int) -> Rule:
    """The rule with id ``rule_id``; NotFound when there is none."""
    row = conn.execute(_select().where(alert_rules.c.id == rule_id)).first()
    if row is None:
        raise NotFound(f"no alert rule {rule_id}")
    return _rule(row)


def list_rules(
    conn: Connection, *, model_id: int | None = None, source: str | None = None
) -> list[Rule]:
    """Every rule by name; ``model_id``: only that model's; ``source``: only those defined there."""
    query = _select().order_by(alert_rules.c.name)
    if model_id is not None:
        query = query.where(alert_rules.c.model_id == model_id)
    if source is not None:
        query = query.where(alert_rules.c.source == source)
    return [_rule(row) for row in conn.execute(query)]


def _select() -> Any:
    return select(alert_rules, models.c.name.label("model_name")).select_from(
        alert_rules.outerjoin(models, models.c.id == alert_rules.c.model_id)
    )


def _rule(row: Any) -> Rule:
    m = row._mapping
    return Rule(
        name=m["name"],
        kind=m["kind"],
        model=m["model_name"],
        params=dict(m["params"] or {}),
        scope=m["scope"],
        scope_key=m["scope_key"],
        group_by=m["group_by"],
        fire_m=m["fire_m"],
        fire_n=m["fire_n"],
        resolve_m=m["resolve_m"],
        resolve_n=m["resolve_n"],
        cooldown_seconds=m["cooldown_seconds"],
        severity=m["severity"],
        endpoints=None if m["endpoints"] is None else tuple(m["endpoints"]),
        hooks=tuple(m["hooks"] or ()),
        enabled=bool(m["enabled"]),
        source=m["source"],
        id=m["id"],
    )
