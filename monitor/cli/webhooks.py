"""Commands of webhook endpoints and their deliveries: `edge-monitor webhooks ...`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_commands(commands: Any) -> None:
    """Add this module's commands to the ``commands`` subparsers."""
    from monitor.cli import _command, _group, _port, _positive

    group = _group(commands, "webhooks", "webhook endpoints, test messages and the delivery log")
    group.epilog = (
        "Messages are signed per Standard Webhooks (webhook-id, webhook-timestamp, "
        "webhook-signature: v1 HMAC-SHA256 with the endpoint's whsec_ secret). Targets on "
        "loopback, private or link-local addresses are refused unless allowed by "
        "MONITOR_WEBHOOK_ALLOWED_NETWORKS."
    )
    sub = group.add_subparsers(title="commands", metavar="COMMAND", required=True)

    add = _command(sub, "add", _add, "add a webhook endpoint (or change one added before)")
    add.add_argument("name", help="the endpoint's name (rules name it in `endpoints`)")
    add.add_argument("url", help="where to POST messages: an http:// or https:// URL")
    add.add_argument(
        "--secret",
        help="its signing secret, whsec_ + base64 of 24 to 64 bytes, or env:VAR "
        "(default: generated and printed once; kept when changing an endpoint)",
    )
    add.add_argument("--description", help="what it is for")

    _command(sub, "list", _list, "every webhook endpoint, its state and failing streak")

    remove = _command(sub, "remove", _remove, "remove an endpoint with its outbox and log")
    remove.add_argument("name", help="the endpoint")

    enable = _command(sub, "enable", _enable, "enable an endpoint (after a 410, or by hand)")
    enable.add_argument("name", help="the endpoint")
    disable = _command(
        sub, "disable", _disable, "disable an endpoint; its undelivered messages are dropped"
    )
    disable.add_argument("name", help="the endpoint")

    test = _command(
        sub, "test", _test, "send a signed webhook.test message now and print the answer"
    )
    test.add_argument("name", help="the endpoint")

    log = _command(sub, "deliveries", _deliveries, "the delivery log, newest first")
    log.add_argument("--endpoint", metavar="NAME", help="one endpoint's messages")
    log.add_argument(
        "--status",
        choices=["pending", "delivering", "delivered", "failed", "dropped"],
        help="only messages in this state",
    )
    log.add_argument("--limit", type=_positive, default=50, help="at most this many (max 1000)")

    receive = _command(
        sub,
        "receive",
        _receive,
        "run the built-in receiver: verify each message and print it, until Ctrl-C",
    )
    receive.add_argument("--host", default="127.0.0.1", help="address to listen on")
    receive.add_argument("--port", type=_port, default=8900, help="port to listen on")
    secret = receive.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret", help="the endpoint's whsec_ secret (or env:VAR)")
    secret.add_argument("--secret-file", metavar="FILE", help="a file holding the secret")


def _add(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command, _settings
    from monitor.commands import webhooks

    added = _run_command(
        webhooks.add_endpoint,
        args.name,
        args.url,
        secret=args.secret,
        description=args.description,
        allowed_networks=_settings().webhook_allowed_networks,
        source="cli",
    )
    endpoint = added.endpoint
    print(f"endpoint {endpoint.name} {'added' if added.created else 'changed'}: {endpoint.url}")
    if added.generated_secret is not None:
        print(f"secret: {added.generated_secret}")
        print("(shown once: give it to the receiver, which verifies each message with it)")
    return 0


def _list(_args: argparse.Namespace) -> int:
    from monitor.cli import _run_command, _table
    from monitor.commands import webhooks

    endpoints = _run_command(webhooks.list_endpoints)
    if not endpoints:
        print('no webhook endpoints (add one with "edge-monitor webhooks add NAME URL")')
        return 0
    rows = [
        (
            e.name,
            e.url,
            "enabled" if e.enabled else f"disabled ({e.disabled_reason or 'by hand'})",
            "-" if e.failing_since is None else e.failing_since.isoformat(timespec="seconds"),
            e.source,
            e.description or "-",
        )
        for e in endpoints
    ]
    for line in _table(("NAME", "URL", "STATE", "FAILING SINCE", "SOURCE", "DESCRIPTION"), rows):
        print(line)
    return 0


def _remove(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command
    from monitor.commands import webhooks

    _run_command(webhooks.remove_endpoint, args.name)
    print(f"endpoint {args.name} removed")
    return 0


def _enable(args: argparse.Namespace) -> int:
    return _switch(args.name, True)


def _disable(args: argparse.Namespace) -> int:
    return _switch(args.name, False)


def _switch(name: str, enabled: bool) -> int:
    from monitor.cli import _run_command
    from monitor.commands import webhooks

    endpoint = _run_command(webhooks.set_enabled, name, enabled)
    if endpoint.enabled:
        print(f"endpoint {endpoint.name} enabled")
    else:
        print(f"endpoint {endpoint.name} disabled; its undelivered messages were dropped")
    return 0


def _test(args: argparse.Namespace) -> int:
    from monitor.cli import CommandFailed, _run_command, _settings
    from monitor.commands import webhooks

    settings = _settings()
    tested = _run_command(
        webhooks.send_test,
        args.name,
        allowed_networks=settings.webhook_allowed_networks,
        timeout=settings.webhook_timeout_seconds,
    )
    outcome = tested.outcome
    if outcome.delivered:
        print(
            f"webhook.test to {tested.endpoint}: delivered, HTTP {outcome.status_code} "
            f"in {outcome.duration_ms:.0f} ms ({tested.message_id})"
        )
        return 0
    if outcome.status_code is None:
        answer = "no answer" + (f" ({outcome.error})" if outcome.error else "")
    else:
        answer = outcome.error or f"HTTP {outcome.status_code}"  # "HTTP 503: what it said"
    raise CommandFailed(f"webhook.test to {tested.endpoint} failed: {answer}")


def _deliveries(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command, _table
    from monitor.commands import webhooks

    entries = _run_command(
        webhooks.deliveries, endpoint=args.endpoint, status=args.status, limit=args.limit
    )
    if not entries:
        print("no deliveries" + (f" to {args.endpoint}" if args.endpoint else ""))
        return 0
    rows = []
    for entry in entries:
        message = entry.message
        last = entry.attempts[-1] if entry.attempts else None
        answer = "-"
        if last is not None:
            answer = f"HTTP {last.status_code}" if last.status_code is not None else "no answer"
            if last.error and last.status_code is None:
                answer += f": {last.error}"
        state = message.status
        if message.status == "pending" and message.attempts:
            state += f" (next {message.next_attempt_at.isoformat(timespec='seconds')})"
        rows.append(
            (
                message.created_at.isoformat(timespec="seconds"),
                message.endpoint,
                message.event_type,
                message.message_id,
                state,
                str(message.attempts),
                answer[:80],
            )
        )
    headers = ("CREATED", "ENDPOINT", "TYPE", "MESSAGE ID", "STATUS", "ATTEMPTS", "LAST ANSWER")
    for line in _table(headers, rows):
        print(line)
    return 0


def _receive(args: argparse.Namespace) -> int:
    from monitor.alerts import rulesfile
    from monitor.alerts.receiver import Receiver
    from monitor.cli import CannotListen, UsageError

    if args.secret_file is not None:
        try:
            with open(args.secret_file, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise UsageError(f"--secret-file: {exc.strerror}: {args.secret_file}") from None
        flag = "--secret-file"
    else:
        value, flag = args.secret, "--secret"
    problems = rulesfile.check_secret(value, flag)
    if problems:
        raise UsageError(f"{problems[0][0]}: {problems[0][1]}")
    secret = rulesfile.resolve_secret(value)

    def show(message: Any) -> None:
        print(message.line(), flush=True)

    try:
        receiver = Receiver(secret, host=args.host, port=args.port, on_message=show)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    print(f"receiving webhooks on {receiver.url} (Ctrl-C to stop)", flush=True)
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        print(file=sys.stderr)
    finally:
        receiver.close()
    return 0
