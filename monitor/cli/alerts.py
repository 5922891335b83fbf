"""Commands of alert rules and alerts: `edge-monitor alerts ...`.

`alerts apply FILE` keeps the rules, endpoints and hooks of a rules file (examples/alerts.toml)
in the database; `alerts add`/`remove` manage single rules; `alerts list`/`show` read alerts.
Their --json prints the document the API answers (monitor.commands.alerts), so both agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

#: The flag that sets each field of a rule, for errors that name a field.
_RULE_FLAGS = {
    "name": "NAME",
    "kind": "--kind",
    "model": "--model",
    "scope": "--scope",
    "scope_key": "--scope-key",
    "group_by": "--group-by",
    "fire": "--fire",
    "fire_m": "--fire",
    "fire_n": "--fire",
    "resolve": "--resolve",
    "resolve_m": "--resolve",
    "resolve_n": "--resolve",
    "cooldown": "--cooldown",
    "cooldown_seconds": "--cooldown",
    "severity": "--severity",
    "endpoints": "--endpoint",
    "hooks": "--hook",
    "params": "--param",
}


def add_commands(commands: Any) -> None:
    """Add this module's commands to the ``commands`` subparsers."""
    from monitor.alerts import rules
    from monitor.cli import _command, _commands, _group, _positive
    from monitor.commands.alerts import ALERT_STATES, DEFAULT_ALERTS, MAX_ALERTS

    group = _commands(_group(commands, "alerts", "alert rules and the alerts they raise"))

    apply = _command(
        group,
        "apply",
        _apply,
        "store the rules, webhook endpoints and retrain hooks of a rules file (TOML)",
    )
    apply.epilog = (
        "What the file defines is created or updated; what an earlier file defined and this "
        "one does not is removed. Rules added with `alerts add` or the admin API are left "
        "alone. See examples/alerts.toml for every key."
    )
    apply.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="the rules file, e.g. alerts.toml (default: MONITOR_ALERTS_FILE)",
    )
    apply.add_argument(
        "--dry-run", action="store_true", help="say what would change and change nothing"
    )

    listed = _command(group, "rules", _rules, "list alert rules")
    listed.add_argument("--model", help="only this model's rules (default: every rule)")
    listed.add_argument(
        "--json",
        action="store_true",
        help="print the JSON document the admin API answers (GET /v1/admin/alert-rules)",
    )

    add = _command(group, "add", _add, "add (or replace) one alert rule")
    add.add_argument("name", metavar="NAME", help="the rule's name")
    add.add_argument(
        "--kind",
        required=True,
        choices=rules.KINDS,
        metavar="KIND",
        help=f"what the rule judges (required): {', '.join(rules.KINDS)}",
    )
    add.add_argument(
        "--model", help="the model whose results it judges (required for window kinds)"
    )
    add.add_argument("--scope", default=rules.FLEET, choices=rules.SCOPES, help="where it judges")
    add.add_argument(
        "--scope-key",
        metavar="KEY",
        help="the one site, group or node a scope names (default: each of them)",
    )
    add.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of the kind, e.g. metric=accuracy, below=0.85 (repeatable)",
    )
    add.add_argument(
        "--fire", default="1 of 1", metavar='"M of N"', help="breaching windows before it fires"
    )
    add.add_argument(
        "--resolve",
        default="1 of 1",
        metavar='"M of N"',
        help="clear windows before a subject recovers",
    )
    add.add_argument(
        "--cooldown",
        default="0",
        metavar="DURATION",
        help="quiet time after resolving: 90s, 30m, 2h, 1d",
    )
    add.add_argument(
        "--group-by",
        choices=[g for g in rules.GROUP_BY if g is not None],
        help="fold subjects into one alert per site, group or rule (default: one per subject)",
    )
    add.add_argument("--severity", default="warning", choices=rules.SEVERITIES, help="severity")
    add.add_argument(
        "--endpoint",
        action="append",
        default=None,
        metavar="NAME",
        help="a webhook endpoint to notify (repeatable; default: every enabled endpoint)",
    )
    add.add_argument(
        "--no-webhooks",
        action="store_true",
        help="notify no endpoint: its alerts are recorded only",
    )
    add.add_argument(
        "--hook",
        action="append",
        default=[],
        metavar="NAME",
        help="a retrain hook to start when it fires (repeatable)",
    )
    add.add_argument("--disabled", action="store_true", help="store it, but do not evaluate it")

    remove = _command(group, "remove", _remove, "remove an alert rule and its alerts")
    remove.add_argument("name", metavar="NAME", help="the rule's name")

    alerts = _command(group, "list", _list, "alerts, newest first: firing ones say so")
    alerts.add_argument(
        "--state", choices=ALERT_STATES, help="only firing or resolved alerts (default: both)"
    )
    alerts.add_argument("--model", help="only this model's alerts (default: every model's)")
    alerts.add_argument(
        "--limit",
        type=_positive,
        default=DEFAULT_ALERTS,
        help=f"at most this many (max {MAX_ALERTS})",
    )
    alerts.add_argument(
        "--json",
        action="store_true",
        help="print the JSON document the read API answers (GET /v1/alerts)",
    )

    show = _command(group, "show", _show, "one alert with its transitions and their webhooks")
    show.add_argument("id", metavar="ID", type=_positive, help="the alert's id (alerts list)")
    show.add_argument(
        "--json",
        action="store_true",
        help="print the JSON document the read API answers (GET /v1/alerts/ID)",
    )


# --- apply ------------------------------------------------------------------------------------


def _apply(args: argparse.Namespace) -> int:
    from monitor.cli import UsageError, _checked_engine, _settings

    settings = _settings()
    path = args.file or settings.alerts_file
    if path is None:
        raise UsageError("give the rules FILE (or set MONITOR_ALERTS_FILE)")
    engine = _checked_engine()
    try:
        for line in apply_lines(engine, path, settings, dry_run=args.dry_run):
            print(line)
    finally:
        engine.dispose()
    return 0


def apply_configured(engine: Any, settings: Any) -> None:
    """Apply the rules file of MONITOR_ALERTS_FILE, when one is set, and print what changed:
    what `worker` and `serve --with-worker` do as they start. A file with problems stops the
    start (CommandFailed), each problem on its own line first."""
    if settings.alerts_file is None:
        return
    for line in apply_lines(engine, settings.alerts_file, settings):
        print(line, flush=True)


def apply_lines(engine: Any, path: Any, settings: Any, *, dry_run: bool = False) -> list[str]:
    """Apply the rules file at ``path`` (or, with ``dry_run``, only say what would change):
    a line per change and note, and one that sums up. A file with one problem is a one-line
    CommandFailed; with several, each is printed on stderr and CommandFailed sums them up."""
    from monitor.alerts.rulesfile import RulesFileInvalid
    from monitor.cli import CommandFailed
    from monitor.commands import alerts

    try:
        applied = alerts.apply_file(
            engine,
            path,
            dry_run=dry_run,
            allowed_networks=settings.webhook_allowed_networks,
        )
    except RulesFileInvalid as exc:
        if len(exc.problems) == 1:
            raise CommandFailed(exc.message) from None
        for line in exc.message.splitlines():
            print(line, file=sys.stderr)
        raise CommandFailed(
            f"{exc.source}: {len(exc.problems)} problems (above); nothing was applied"
        ) from None
    verbs = ("would create", "would update", "would remove") if dry_run else (
        "created", "updated", "removed",
    )  # fmt: skip
    lines = []
    for kind, changes in (
        ("endpoint", applied.endpoints),
        ("hook", applied.hooks),
        ("rule", applied.rules),
    ):
        for verb, names in zip(
            verbs, (changes.created, changes.updated, changes.removed), strict=True
        ):
            lines += [f"{verb} {kind} {name!r}" for name in names]
    lines += [f"note: {note}" for note in applied.notes]
    summary = "; ".join(
        f"{kind}: {_counts(changes)}"
        for kind, changes in (
            ("rules", applied.rules),
            ("endpoints", applied.endpoints),
            ("hooks", applied.hooks),
        )
    )
    lines.append(f"{applied.source}: {summary}")
    if dry_run:
        lines.append("dry run: nothing was changed")
    return lines


def _counts(changes: Any) -> str:
    parts = [
        f"{len(names)} {what}"
        for what, names in (
            ("created", changes.created),
            ("updated", changes.updated),
            ("unchanged", changes.unchanged),
            ("removed", changes.removed),
        )
        if names
    ]
    return ", ".join(parts) or "none"


# --- rules ------------------------------------------------------------------------------------


def _rules(args: argparse.Namespace) -> int:
    from monitor.alerts.rulesfile import duration_text
    from monitor.cli import _run_command, _table
    from monitor.commands import alerts

    document = _run_command(alerts.rules_document, model=args.model)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    found = document["rules"]
    if not found:
        print(
            "no alert rules"
            + (f" of {args.model}" if args.model else "")
            + ' yet: define them in a rules file ("edge-monitor alerts apply FILE") or with '
            '"edge-monitor alerts add"'
        )
        return 0
    rows = [
        [
            r["name"] + ("" if r["enabled"] else " (disabled)"),
            r["kind"],
            r["model"] or "any",
            _scope(r),
            f"{r['fire_m']} of {r['fire_n']}",
            f"{r['resolve_m']} of {r['resolve_n']}",
            duration_text(r["cooldown_seconds"]),
            r["severity"],
            _params(r["params"]),
            r["source"],
        ]
        for r in found
    ]
    headers = ["NAME", "KIND", "MODEL", "SCOPE", "FIRE", "RESOLVE", "COOLDOWN", "SEVERITY"]
    for line in _table([*headers, "PARAMS", "SOURCE"], rows):
        print(line)
    return 0


def _scope(rule: dict[str, Any]) -> str:
    scope = rule["scope"] + (f":{rule['scope_key']}" if rule["scope_key"] else "")
    if rule["group_by"]:
        scope += f" by {rule['group_by']}"
    return scope


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


# --- add / remove -----------------------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    from monitor.cli import CommandFailed, UsageError, _run_command
    from monitor.commands import alerts
    from monitor.errors import ValidationFailed

    if args.no_webhooks and args.endpoint:
        raise UsageError("give --endpoint or --no-webhooks, not both")
    fields: dict[str, Any] = {
        "name": args.name,
        "kind": args.kind,
        "scope": args.scope,
        "fire": args.fire,
        "resolve": args.resolve,
        "cooldown": args.cooldown,
        "severity": args.severity,
        "hooks": list(args.hook),
        "enabled": not args.disabled,
        "params": _param_values(args.param),
    }
    for key, value in (
        ("model", args.model),
        ("scope_key", args.scope_key),
        ("group_by", args.group_by),
    ):
        if value is not None:
            fields[key] = value
    if args.no_webhooks:
        fields["endpoints"] = []
    elif args.endpoint:
        fields["endpoints"] = list(args.endpoint)
    try:
        rule = alerts.build_rule(fields, source="cli")
    except ValidationFailed as exc:
        raise UsageError(_in_flags(exc)) from None
    try:
        stored, created = _run_command(alerts.add_rule, rule)
    except ValidationFailed as exc:
        raise CommandFailed(_in_flags(exc)) from None
    print(f"{'added' if created else 'replaced'} rule {stored.name!r}: {_describe(stored)}")
    return 0


def _param_values(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` flags as parameters: numbers and true/false as such, the rest as text."""
    from monitor.cli import UsageError

    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param must look like KEY=VALUE, got {item!r}")
        value: Any = text
        if text in ("true", "false"):
            value = text == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(text)
                    break
                except ValueError:
                    continue
        params[key] = value
    return params


def _in_flags(exc: Any) -> str:
    """A refused rule's problems named by the flags that set them, on one line."""
    details = exc.details if isinstance(exc.details, list) else []
    if not details:
        return str(exc.message)
    parts = []
    for detail in details:
        field = str(detail.get("field", ""))
        head, _, rest = field.partition(".")
        base = head.split("[", 1)[0]
        flag = _RULE_FLAGS.get(base, base)
        if base == "params" and rest:
            flag = f"--param {rest}"
        parts.append(f"{flag}: {detail.get('message', '')}")
    return "; ".join(parts)


def _describe(rule: Any) -> str:
    from monitor.alerts.rulesfile import duration_text

    where = rule.scope + (f" {rule.scope_key}" if rule.scope_key else "")
    what = f"{rule.kind} of {rule.model}" if rule.model else f"{rule.kind} of every model"
    parts = [
        what,
        f"at {where}",
        f"fires {rule.fire_m} of {rule.fire_n}",
        f"resolves {rule.resolve_m} of {rule.resolve_n}",
    ]
    if rule.cooldown_seconds:
        parts.append(f"cooldown {duration_text(rule.cooldown_seconds)}")
    parts.append(rule.severity)
    if not rule.enabled:
        parts.append("disabled")
    return ", ".join(parts)


def _remove(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command
    from monitor.commands import alerts

    removed = _run_command(alerts.remove_rule, args.name)
    print(f"removed rule {removed.name!r} and its alerts")
    if removed.source == "file":
        print(
            "note: a rules file defined it: it comes back at the next `edge-monitor alerts "
            "apply` unless it is removed from the file"
        )
    return 0


# --- list / show ------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from monitor.cli import UsageError, _run_command
    from monitor.commands import alerts
    from monitor.errors import ValidationFailed

    try:
        alerts.check_limit(args.limit)
    except ValidationFailed as exc:
        raise UsageError(exc.message) from None
    document = _run_command(
        alerts.alerts_document, state=args.state, model=args.model, limit=args.limit
    )
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    found = document["alerts"]
    if not found:
        what = {"firing": "firing alerts", "resolved": "resolved alerts"}.get(args.state, "alerts")
        print(f"no {what}" + (f" of {args.model}" if args.model else ""))
        return 0
    for alert in found:
        print(alert_line(alert))
    firing = sum(1 for a in found if a["state"] == "firing")
    print(
        f"firing: {firing} of {len(found)} alert(s) shown" if firing else "none of these is firing"
    )
    return 0


def alert_line(alert: dict[str, Any]) -> str:
    """One alert in words: ``#12 FIRING (critical) since TIME: summary``."""
    if alert["state"] == "firing":
        head = f"#{alert['id']} FIRING ({alert['severity']}) since {alert['fired_at']}"
    else:
        head = (
            f"#{alert['id']} resolved ({alert['severity']}) {alert['fired_at']} to "
            f"{alert['resolved_at']}"
        )
    return f"{head}: {alert['summary']}"


def _show(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command
    from monitor.commands import alerts

    document = _run_command(alerts.alert_show_document, args.id)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    for line in show_lines(document):
        print(line)
    return 0


def show_lines(alert: dict[str, Any]) -> list[str]:
    """An alert and its transitions in words, each with its webhook-id and deliveries."""
    model = f", model {alert['model']}" if alert["model"] else ""
    lines = [
        alert_line(alert),
        f"  rule {alert['rule']!r} ({alert['kind']}){model}, group {alert['group']}, "
        f"episode {alert['episode']}",
    ]
    if alert["subjects"]:
        lines.append(f"  in trouble: {', '.join(alert['subjects'])}")
    if alert["first_window_start"]:
        lines.append(f"  windows: {alert['first_window_start']} to {alert['last_window_start']}")
    lines.append("  transitions:")
    for event in alert["events"]:
        window = f" (window {event['window_start']})" if event["window_start"] else ""
        lines.append(
            f"    {event['seq']}. {event['kind']} at {event['at']}{window}, "
            f"webhook-id {event['message_id']}"
        )
        for d in event["deliveries"]:
            tries = f"{d['attempts']} attempt{'s' if d['attempts'] != 1 else ''}"
            error = (
                f", last error: {d['last_error']}"
                if d["last_error"] and d["status"] != "delivered"
                else ""
            )
            lines.append(f"       {d['endpoint']}: {d['status']} ({tries}){error}")
    return lines
