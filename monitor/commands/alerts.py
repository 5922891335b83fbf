"""Alert rules and alerts, shared by `edge-monitor alerts ...` and the admin API: applying a
rules file, adding and removing rules, reading alerts, and the one JSON document of a rule and
of an alert that the CLI's ``--json`` prints and the API answers.

``apply_file`` keeps the database in step with a rules file in one transaction: what the file
defines is created or updated (``source = "file"``), what a file defined before and no longer
does is removed, and rules, endpoints and hooks added by the CLI or the API are left alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from monitor.alerts import rules, rulesfile, targets
from monitor.alerts.rules import Rule
from monitor.alerts.rulesfile import EndpointSpec, HookSpec, RulesFileInvalid
from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage import alert_rules, models, retrains, webhooks
from monitor.storage import alerts as alert_store
from monitor.storage.engine import begin_write
from monitor.storage.types import utcnow

log = logging.getLogger(__name__)

FILE = "file"
#: Alerts listed when no limit is given, and the most one request may ask for.
DEFAULT_ALERTS = 50
MAX_ALERTS = 1000
ALERT_STATES = ("firing", "resolved")
#: The reason storage records when an endpoint is disabled by a person (or a file): any other
#: reason (a 410, days of failures) was the delivery job's, and a re-applied file keeps it off.
DISABLED_BY_HAND = "disabled by hand"


# --- What applying a file changed -------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What applying a file did to one kind of thing, by name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


@dataclass(frozen=True)
class Applied:
    """What ``apply_file`` did (or, with ``dry_run``, would do)."""

    source: str
    dry_run: bool
    rules: Changes
    endpoints: Changes
    hooks: Changes
    #: Things worth saying besides the changes (a generated secret, an endpoint kept disabled).
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.rules.changed or self.endpoints.changed or self.hooks.changed

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "rules": _changes_json(self.rules),
            "endpoints": _changes_json(self.endpoints),
            "hooks": _changes_json(self.hooks),
            "notes": list(self.notes),
        }


def _changes_json(changes: Changes) -> dict[str, list[str]]:
    return {
        "created": changes.created,
        "updated": changes.updated,
        "unchanged": changes.unchanged,
        "removed": changes.removed,
    }


def apply_file(
    engine: Engine,
    path: str | Path,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    allowed_networks: Sequence[str] = (),
) -> Applied:
    """Make the stored rules, endpoints and hooks of source "file" those of the rules file at
    ``path``, in one transaction. Every problem of the file, including what only the database
    knows (a model not registered, a name taken by a rule the CLI added, an endpoint on a
    refused address), is reported at once as RulesFileInvalid, and nothing changes. With
    ``dry_run`` nothing is written: the answer says what would change."""
    now = now or utcnow()
    source = str(path)
    if dry_run:
        with engine.connect() as conn:
            return _apply(conn, source, path, now, True, environ, allowed_networks)
    with begin_write(engine) as conn:
        applied = _apply(conn, source, path, now, False, environ, allowed_networks)
    log.info(
        "applied %s: rules %s, endpoints %s, hooks %s",
        source,
        _counts(applied.rules),
        _counts(applied.endpoints),
        _counts(applied.hooks),
    )
    return applied


def _counts(changes: Changes) -> str:
    return (
        f"{len(changes.created)} created, {len(changes.updated)} updated, "
        f"{len(changes.unchanged)} unchanged, {len(changes.removed)} removed"
    )


def _apply(
    conn: Connection,
    source: str,
    path: str | Path,
    now: datetime,
    dry_run: bool,
    environ: Mapping[str, str] | None,
    allowed_networks: Sequence[str],
) -> Applied:
    stored_rules = {r.name: r for r in alert_rules.list_rules(conn)}
    stored_endpoints = {e.name: e for e in webhooks.list_endpoints(conn)}
    stored_hooks = {h.name: h for h in retrains.list_hooks(conn)}
    parsed, problems = rulesfile.read_file(
        path,
        environ=environ,
        known_endpoints={n for n, e in stored_endpoints.items() if e.source != FILE},
        known_hooks={n for n, h in stored_hooks.items() if h.source != FILE},
    )
    problems += _stored_problems(conn, parsed, stored_rules, stored_endpoints, stored_hooks)
    problems += _target_problems(parsed, allowed_networks)
    if problems:
        raise RulesFileInvalid(source, problems)

    notes: list[str] = []
    endpoint_changes = Changes()
    for spec in parsed.endpoints:
        _apply_endpoint(conn, spec, stored_endpoints.get(spec.name), endpoint_changes, notes,
                        now=now, dry_run=dry_run)  # fmt: skip
    hook_changes = Changes()
    model_ids = {m.name: m.id for m in models.list_models(conn)}
    for hook in parsed.hooks:
        _apply_hook(conn, hook, stored_hooks.get(hook.name), model_ids, hook_changes, notes,
                    now=now, dry_run=dry_run)  # fmt: skip
    rule_changes = Changes()
    for rule in parsed.rules:
        before = stored_rules.get(rule.name)
        if before is not None and _same_rule(before, rule):
            rule_changes.unchanged.append(rule.name)
            continue
        (rule_changes.created if before is None else rule_changes.updated).append(rule.name)
        if not dry_run:
            alert_rules.upsert_rule(conn, rule, now=now)

    # Rules first: a rule removed with the file may be the last to name a removed hook.
    for name, rule in stored_rules.items():
        if rule.source == FILE and name not in {r.name for r in parsed.rules}:
            rule_changes.removed.append(name)
            if not dry_run:
                alert_rules.delete_rule(conn, name)
    for name, endpoint in stored_endpoints.items():
        if endpoint.source == FILE and name not in {e.name for e in parsed.endpoints}:
            endpoint_changes.removed.append(name)
            if not dry_run:
                webhooks.delete_endpoint(conn, name)
    for name, stored_hook in stored_hooks.items():
        if stored_hook.source == FILE and name not in {h.name for h in parsed.hooks}:
            hook_changes.removed.append(name)
            if not dry_run:
                retrains.delete_hook(conn, name)
    return Applied(source, dry_run, rule_changes, endpoint_changes, hook_changes, notes)


def _stored_problems(
    conn: Connection,
    parsed: rulesfile.RulesFile,
    stored_rules: Mapping[str, Rule],
    stored_endpoints: Mapping[str, webhooks.Endpoint],
    stored_hooks: Mapping[str, retrains.Hook],
) -> list[tuple[str, str]]:
    """What the file asks that the database refuses: unknown models, and names taken by rules,
    endpoints or hooks defined elsewhere (the CLI or the API), which a file does not take over."""
    known_models = {m.name for m in models.list_models(conn)}
    problems: list[tuple[str, str]] = []

    def taken(kind: str, name: str, source: str, remove: str = "") -> None:
        article = "an" if kind[0] in "aeiou" else "a"
        how = f' ("{remove}")' if remove else ""
        problems.append(
            (
                f"{parsed.path_of(kind, name)}.name",
                f"{article} {kind} of this name was added by the {source}; rename this one or "
                f"remove that one first{how}",
            )
        )

    for rule in parsed.rules:
        where = parsed.path_of("rule", rule.name)
        if rule.model is not None and rule.model not in known_models:
            problems.append((f"{where}.model", _no_model(rule.model)))
        before = stored_rules.get(rule.name)
        if before is not None and before.source != FILE:
            taken("rule", rule.name, before.source, f"edge-monitor alerts remove {rule.name}")
    for spec in parsed.endpoints:
        endpoint = stored_endpoints.get(spec.name)
        if endpoint is not None and endpoint.source != FILE:
            taken("endpoint", spec.name, endpoint.source)
    for hook in parsed.hooks:
        if hook.model not in known_models:
            problems.append((f"{parsed.path_of('hook', hook.name)}.model", _no_model(hook.model)))
        stored = stored_hooks.get(hook.name)
        if stored is not None and stored.source != FILE:
            taken("hook", hook.name, stored.source)
    return problems


def _no_model(name: str) -> str:
    return f'no model named {name!r} (register it with "edge-monitor models add {name}")'


def _target_problems(
    parsed: rulesfile.RulesFile, allowed_networks: Sequence[str]
) -> list[tuple[str, str]]:
    """URLs webhooks may not go to (loopback, private, link-local... unless allowed). A host
    that does not resolve now is let through: each delivery checks its address again."""
    urls = [(f"{parsed.path_of('endpoint', e.name)}.url", e.url) for e in parsed.endpoints]
    urls += [
        (f"{parsed.path_of('hook', h.name)}.url", h.config["url"])
        for h in parsed.hooks
        if h.kind == "webhook"
    ]
    return [
        (where, message)
        for where, url in urls
        if (message := targets.refusal(url, allowed_networks))
    ]


def _apply_endpoint(
    conn: Connection,
    spec: EndpointSpec,
    before: webhooks.Endpoint | None,
    changes: Changes,
    notes: list[str],
    *,
    now: datetime,
    dry_run: bool,
) -> None:
    secret = spec.secret
    if secret is None and before is not None:
        secret = before.secret  # generated when it was first stored: kept
    enabled = spec.enabled
    if (
        before is not None
        and spec.enabled
        and not before.enabled
        and before.disabled_reason not in (None, DISABLED_BY_HAND)
        and before.url == spec.url
    ):
        # The delivery job turned it off (a 410, days of failures): a file applied again does
        # not turn it back on; a new URL, or enabling it by hand, does.
        enabled = False
        notes.append(
            f"endpoint {spec.name} stays disabled ({before.disabled_reason}); "
            f'enable it with "edge-monitor webhooks enable {spec.name}"'
        )
    if before is not None and (
        before.url,
        before.secret,
        before.description,
        before.enabled,
    ) == (spec.url, secret, spec.description, enabled):
        changes.unchanged.append(spec.name)
        return
    (changes.created if before is None else changes.updated).append(spec.name)
    if secret is None:
        if dry_run:
            notes.append(f"endpoint {spec.name}: a signing secret would be generated")
            return
        from monitor.alerts.signing import new_secret

        secret = new_secret()
        # Shown once, as `webhooks add` does: the receiver needs it to verify signatures.
        notes.append(f"endpoint {spec.name}: generated signing secret {secret}")
    if not dry_run:
        webhooks.upsert_endpoint(
            conn,
            name=spec.name,
            url=spec.url,
            secret=secret,
            description=spec.description,
            enabled=enabled,
            source=FILE,
            now=now,
        )


def _apply_hook(
    conn: Connection,
    spec: HookSpec,
    before: retrains.Hook | None,
    model_ids: Mapping[str, int],
    changes: Changes,
    notes: list[str],
    *,
    now: datetime,
    dry_run: bool,
) -> None:
    config = dict(spec.config)
    generate = spec.kind == "webhook" and "secret" not in config
    if generate and before is not None and before.kind == "webhook" and "secret" in before.config:
        config["secret"] = before.config["secret"]
        generate = False
    if (
        before is not None
        and not generate
        and (
            before.model,
            before.kind,
            before.config,
            before.timeout_seconds,
            before.cooldown_seconds,
            before.enabled,
        )
        == (
            spec.model,
            spec.kind,
            config,
            spec.timeout_seconds,
            spec.cooldown_seconds,
            spec.enabled,
        )
    ):
        changes.unchanged.append(spec.name)
        return
    (changes.created if before is None else changes.updated).append(spec.name)
    if generate:
        if dry_run:
            notes.append(f"hook {spec.name}: a signing secret would be generated")
        else:
            from monitor.alerts.signing import new_secret

            config["secret"] = new_secret()
            notes.append(f"hook {spec.name}: generated signing secret {config['secret']}")
    if not dry_run:
        retrains.upsert_hook(
            conn,
            name=spec.name,
            model_id=model_ids[spec.model],
            kind=spec.kind,
            config=config,
            timeout_seconds=spec.timeout_seconds,
            cooldown_seconds=spec.cooldown_seconds,
            enabled=spec.enabled,
            source=FILE,
            now=now,
        )


def _same_rule(stored: Rule, wanted: Rule) -> bool:
    return replace(stored, id=None) == replace(wanted, id=None, params=dict(wanted.params))


# --- Rules one by one (the CLI's `alerts add`, the API's PUT) ----------------------------------


def build_rule(fields: Mapping[str, Any], *, source: str) -> Rule:
    """A rule from its fields as a rules file writes them (``fire = "2 of 3"`` or ``fire_m``,
    ``cooldown = "30m"`` or ``cooldown_seconds``, a ``params`` table...). ValidationFailed names
    every problem by its field (``params.metric``)."""
    rule, problems = rulesfile.rule_from(fields, "rule", source=source)
    if problems or rule is None:
        raise _invalid_rule(fields.get("name"), problems)
    return rule


def _invalid_rule(name: Any, problems: Sequence[tuple[str, str]]) -> ValidationFailed:
    fields = [(where.removeprefix("rule."), message) for where, message in problems]
    what = f"alert rule {name!r}" if isinstance(name, str) else "alert rule"
    return ValidationFailed(
        f"invalid {what}: " + "; ".join(f"{where}: {message}" for where, message in fields),
        details=[{"code": "invalid_field", "field": f, "message": m} for f, m in fields],
    )


def add_rule(engine: Engine, rule: Rule, *, now: datetime | None = None) -> tuple[Rule, bool]:
    """Store ``rule`` (source "cli" or "api") under its name: (the stored rule, whether it was
    new). A rule of that name from the rules file is not replaced (Conflict): the file would
    bring it back. The model and every endpoint and hook it names must exist."""
    problems = rules.check(rule, "rule")
    if problems:
        raise _invalid_rule(rule.name, problems)
    with begin_write(engine) as conn:
        before = alert_rules.rule_by_name(conn, rule.name)
        if before is not None and before.source == FILE:
            raise Conflict(
                f"alert rule {rule.name!r} is defined in the rules file: change it there and "
                '"edge-monitor alerts apply" it',
                code="defined_in_file",
            )
        missing: list[tuple[str, str]] = []
        if rule.model is not None and models.find_model(conn, rule.model) is None:
            missing.append(("model", f"no model named {rule.model!r}"))
        for i, name in enumerate(rule.endpoints or ()):
            if webhooks.endpoint_by_name(conn, name) is None:
                missing.append((f"endpoints[{i}]", f"no endpoint named {name!r}"))
        for i, name in enumerate(rule.hooks):
            if retrains.hook_by_name(conn, name) is None:
                missing.append((f"hooks[{i}]", f"no hook named {name!r}"))
        if missing:
            raise _invalid_rule(rule.name, [(f"rule.{f}", m) for f, m in missing])
        stored = alert_rules.upsert_rule(conn, rule, now=now or utcnow())
    return stored, before is None


def remove_rule(engine: Engine, name: str) -> Rule:
    """Delete the rule ``name`` with its alerts; the rule as it was (NotFound ``unknown_rule``).
    A rule of the rules file comes back at its next apply unless it is removed there too."""
    with begin_write(engine) as conn:
        rule = alert_rules.rule_by_name(conn, name)
        if rule is None:
            raise NotFound(f"no alert rule named {name!r}", code="unknown_rule")
        alert_rules.delete_rule(conn, name)
    return rule


def get_rule(engine: Engine, name: str) -> Rule:
    with engine.connect() as conn:
        rule = alert_rules.rule_by_name(conn, name)
    if rule is None:
        raise NotFound(f"no alert rule named {name!r}", code="unknown_rule")
    return rule


def list_rules(engine: Engine, *, model: str | None = None) -> list[Rule]:
    """Every rule by name, or those of one model (NotFound ``unknown_model``)."""
    with engine.connect() as conn:
        model_id = None if model is None else models.get_model(conn, model).id
        return alert_rules.list_rules(conn, model_id=model_id)


# --- Documents ----------------------------------------------------------------------------------


def rule_document(rule: Rule) -> dict[str, Any]:
    """A rule as JSON: the fields a PUT of the admin API takes (M of N and the cooldown as
    numbers), with where it was defined. The CLI's --json prints the same."""
    return {
        "name": rule.name,
        "kind": rule.kind,
        "model": rule.model,
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
        "params": _plain(dict(rule.params)),
        "source": rule.source,
    }


def rules_document(engine: Engine, *, model: str | None = None) -> dict[str, Any]:
    """Every rule (or one model's): ``GET /v1/admin/alert-rules``, `alerts rules --json`."""
    return {"rules": [rule_document(r) for r in list_rules(engine, model=model)]}


def _plain(value: Any) -> Any:
    """``value`` as JSON: times in ISO 8601 (UTC), a float JSON cannot hold as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_state(state: str | None) -> str | None:
    if state is not None and state not in ALERT_STATES:
        raise _invalid_query("state", f"state must be firing or resolved, got {state!r}")
    return state


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_ALERTS:
        raise _invalid_query("limit", f"limit must be 1 to {MAX_ALERTS}, got {limit}")
    return limit


def _invalid_query(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message, details=[{"code": "invalid_field", "field": field_name, "message": message}]
    )


# --- Alerts -------------------------------------------------------------------------------------


def alert_document(alert: alert_store.Alert) -> dict[str, Any]:
    """An alert as JSON: what `alerts list --json` prints and the API answers."""
    return _plain(
        {
            "id": alert.id,
            "rule": alert.rule,
            "kind": alert.kind,
            "model": alert.model,
            "group": alert.group_key,
            "episode": alert.episode,
            "state": alert.state,
            "severity": alert.severity,
            "summary": alert.summary,
            "subjects": list(alert.subjects),
            "details": alert.details,
            "first_window_start": alert.first_window_start,
            "last_window_start": alert.last_window_start,
            "fired_at": alert.fired_at,
            "updated_at": alert.updated_at,
            "resolved_at": alert.resolved_at,
        }
    )


def alerts_document(
    engine: Engine,
    *,
    state: str | None = None,
    model: str | None = None,
    limit: int = DEFAULT_ALERTS,
) -> dict[str, Any]:
    """Alerts, newest first, firing or resolved or both, of one model or all:
    ``GET /v1/alerts``, ``GET /v1/admin/alerts``, `alerts list --json`."""
    return {
        "alerts": [
            alert_document(a) for a in list_alerts(engine, state=state, model=model, limit=limit)
        ]
    }


def list_alerts(
    engine: Engine,
    *,
    state: str | None = None,
    model: str | None = None,
    limit: int = DEFAULT_ALERTS,
) -> list[alert_store.Alert]:
    check_state(state)
    check_limit(limit)
    with engine.connect() as conn:
        model_id = None if model is None else models.get_model(conn, model).id
        return alert_store.list_alerts(conn, state=state, model_id=model_id, limit=limit)


@dataclass(frozen=True)
class Delivery:
    """Where one transition of an alert was sent, and how that went."""

    endpoint: str
    status: str
    attempts: int
    delivered_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class AlertView:
    """An alert with its transitions and, per transition, its webhook deliveries."""

    alert: alert_store.Alert
    events: list[alert_store.AlertEvent]
    deliveries: dict[int, list[Delivery]]


def show_alert(engine: Engine, alert_id: int) -> AlertView:
    """One alert with its events (NotFound ``unknown_alert``)."""
    with engine.connect() as conn:
        try:
            alert = alert_store.get_alert(conn, alert_id)
        except NotFound:
            raise NotFound(f"no alert {alert_id}", code="unknown_alert") from None
        events = alert_store.alert_events(conn, alert_id)
        deliveries = _deliveries(conn, events)
    return AlertView(alert, events, deliveries)


def _deliveries(
    conn: Connection, events: Sequence[alert_store.AlertEvent]
) -> dict[int, list[Delivery]]:
    """Per event id, its outbox messages (one per endpoint it was queued for)."""
    found = webhooks.messages_for_events(conn, [e.id for e in events])
    return {
        event_id: [
            Delivery(m.endpoint, m.status, m.attempts, m.delivered_at, m.last_error)
            for m in messages
        ]
        for event_id, messages in found.items()
    }


def alert_view_document(view: AlertView) -> dict[str, Any]:
    """An alert with its events: ``GET /v1/alerts/{id}`` (and the admin one), `alerts show
    --json`. Each event carries its ``webhook-id`` (``message_id``) and its deliveries."""
    document = alert_document(view.alert)
    document["events"] = [
        _plain(
            {
                "seq": e.seq,
                "kind": e.kind,
                "at": e.at,
                "window_start": e.window_start,
                "message_id": e.message_id,
                "payload": e.payload,
                "deliveries": [
                    {
                        "endpoint": d.endpoint,
                        "status": d.status,
                        "attempts": d.attempts,
                        "delivered_at": d.delivered_at,
                        "last_error": d.last_error,
                    }
                    for d in view.deliveries.get(e.id, [])
                ],
            }
        )
        for e in view.events
    ]
    return document


def alert_show_document(engine: Engine, alert_id: int) -> dict[str, Any]:
    return alert_view_document(show_alert(engine, alert_id))
