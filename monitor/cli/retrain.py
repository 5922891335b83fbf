"""Commands of retraining hooks and runs: `edge-monitor retrain ...`."""

from __future__ import annotations

import argparse
import json
import shlex
import time
from typing import Any

#: The flag of each field of a hook's section (errors name the flag the user typed).
_FLAGS = {
    "name": "NAME",
    "model": "--model",
    "kind": "--kind",
    "argv": "--command",
    "env": "--env",
    "entry_point": "--entry-point",
    "url": "--url",
    "secret": "--secret",
    "timeout": "--timeout",
    "cooldown": "--cooldown",
    "enabled": "--disabled",
}
_KIND_FLAGS = {
    "command": ("command", "env"),
    "python": ("entry_point",),
    "webhook": ("url", "secret"),
    "reference": (),
}
#: How often `retrain run --wait` looks at a run another worker (or a pipeline) is finishing.
_POLL_SECONDS = 1.0


def add_commands(commands: Any) -> None:
    """Add this module's commands to the ``commands`` subparsers."""
    from monitor.alerts.rulesfile import HOOK_KINDS
    from monitor.cli import _command, _group, _positive
    from monitor.commands.retrain import DEFAULT_RUNS, MAX_RUNS
    from monitor.storage.retrains import STATUSES

    group = _group(commands, "retrain", "retraining hooks and the record of every retrain run")
    group.epilog = (
        "A hook retrains a model when an alert rule naming it fires (or by hand, `retrain run`): "
        "a command (argv, no shell; the run's context as JSON on stdin and in "
        "EDGE_MONITOR_CONTEXT; the version it registered as a last stdout line "
        '{"version": "5"}), a Python entry point module:function (called with the context, '
        'returns {"version": ...} or a version string), a signed webhook to an external '
        "pipeline (which reports through POST /v1/admin/retrain/runs/ID/result), or the "
        "bundled reference retrainer. One run per model is in flight at a time; each hook "
        "waits its cooldown between runs. The worker runs queued runs."
    )
    sub = group.add_subparsers(title="commands", metavar="COMMAND", required=True)

    hooks = _command(sub, "hooks", _hooks, "the retrain hooks, by name")
    hooks.add_argument("--model", help="one model's hooks (default: every model's)")
    hooks.add_argument("--json", action="store_true", help="print JSON (secrets left out)")

    add = _command(sub, "add-hook", _add_hook, "add a retrain hook (or replace one added before)")
    add.add_argument("name", help="the hook's name (rules name it in `hooks`)")
    add.add_argument("--model", required=True, help="the model it retrains (required)")
    add.add_argument("--kind", required=True, choices=HOOK_KINDS, help="what it runs (required)")
    add.add_argument(
        "--command",
        metavar="'PROG ARG...'",
        help="with --kind command: the command line, split into words as a shell would "
        "(quotes group words) but run without a shell",
    )
    add.add_argument(
        "--env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="with --kind command: a variable to set for it, beside the worker's (repeatable)",
    )
    add.add_argument(
        "--entry-point",
        metavar="MODULE:FUNCTION",
        help="with --kind python: the function to call, e.g. mypipeline.retrain:run",
    )
    add.add_argument("--url", help="with --kind webhook: where to POST the signed request")
    add.add_argument(
        "--secret",
        help="with --kind webhook: its signing secret, whsec_ + base64 of 24 to 64 bytes, or "
        "env:VAR (default: generated and printed once; kept when replacing a webhook hook)",
    )
    add.add_argument(
        "--timeout",
        default="1h",
        metavar="DURATION",
        help="how long a run may take (90s, 30m, 2h, 1d; at most 1d); a webhook's run waits "
        "this long for the pipeline's result",
    )
    add.add_argument(
        "--cooldown",
        default="6h",
        metavar="DURATION",
        help="the least time between two runs of this hook (0 for none)",
    )
    add.add_argument(
        "--disabled", action="store_true", help="add it disabled (alerts queue no runs of it)"
    )

    remove = _command(sub, "remove-hook", _remove_hook, "remove a hook (its runs stay recorded)")
    remove.add_argument("name", help="the hook")

    run = _command(sub, "run", _run, "queue a run of a hook now (a manual trigger)")
    run.add_argument("hook", help="the hook to run")
    run.add_argument(
        "--wait",
        action="store_true",
        help="run it in this process (not the worker's), print how it went and exit non-zero "
        "unless it produced a version",
    )

    runs = _command(sub, "runs", _runs, "retrain runs, newest first")
    runs.add_argument("--model", help="one model's runs (default: every model's)")
    runs.add_argument("--status", choices=STATUSES, help="only runs in this status")
    runs.add_argument(
        "--limit", type=_positive, default=DEFAULT_RUNS, help=f"at most this many (max {MAX_RUNS})"
    )
    runs.add_argument("--json", action="store_true", help="print JSON, with each run's output")

    show = _command(
        sub, "show", _show, "one run: trigger, status, version, promotion and output tail"
    )
    show.add_argument("id", type=_positive, help="the run's id (from `retrain runs`)")
    show.add_argument("--json", action="store_true", help="print JSON")


def _hooks(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command, _table
    from monitor.commands import retrain

    found = _run_command(retrain.list_hooks, model=args.model)
    if args.json:
        print(json.dumps([retrain.hook_document(h) for h in found], indent=2))
        return 0
    if not found:
        print('no retrain hooks (add one with "edge-monitor retrain add-hook NAME ...")')
        return 0
    rows = [
        (
            h.name,
            h.model,
            h.kind,
            _target(h),
            _duration(h.timeout_seconds),
            _duration(h.cooldown_seconds),
            "enabled" if h.enabled else "disabled",
            h.source,
        )
        for h in found
    ]
    headers = ("NAME", "MODEL", "KIND", "RUNS", "TIMEOUT", "COOLDOWN", "STATE", "SOURCE")
    for line in _table(headers, rows):
        print(line)
    return 0


def _target(hook: Any) -> str:
    if hook.kind == "command":
        return shlex.join(hook.config.get("argv") or [])
    if hook.kind == "python":
        return str(hook.config.get("entry_point", ""))
    if hook.kind == "webhook":
        return str(hook.config.get("url", ""))
    return "the reference retrainer"


def _duration(seconds: float) -> str:
    from monitor.alerts.rulesfile import duration_text

    return duration_text(seconds)


def _section(args: argparse.Namespace) -> dict[str, Any]:
    """The hook's section from the flags; a flag of another kind is a usage error."""
    from monitor.cli import UsageError

    given = {
        "command": args.command,
        "env": args.env or None,
        "entry_point": args.entry_point,
        "url": args.url,
        "secret": args.secret,
    }
    for key, value in given.items():
        if value is not None and key not in _KIND_FLAGS[args.kind]:
            flag = "--command" if key == "command" else _FLAGS[key]
            raise UsageError(f"{flag} does not go with --kind {args.kind}")
    section: dict[str, Any] = {
        "name": args.name,
        "model": args.model,
        "kind": args.kind,
        "timeout": args.timeout,
        "cooldown": args.cooldown,
        "enabled": not args.disabled,
    }
    if args.kind == "command":
        if not args.command:
            raise UsageError("--kind command needs --command 'PROG ARG...'")
        try:
            section["argv"] = shlex.split(args.command)
        except ValueError as exc:
            raise UsageError(f"--command: {exc}") from None
        env = {}
        for item in args.env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--env must look like KEY=VALUE, got {item!r}")
            env[key] = value
        if env:
            section["env"] = env
    elif args.kind == "python":
        if not args.entry_point:
            raise UsageError("--kind python needs --entry-point MODULE:FUNCTION")
        section["entry_point"] = args.entry_point
    elif args.kind == "webhook":
        if not args.url:
            raise UsageError("--kind webhook needs --url URL")
        section["url"] = args.url
        if args.secret is not None:
            section["secret"] = args.secret
    return section


def _add_hook(args: argparse.Namespace) -> int:
    from monitor.cli import UsageError, _run_command, _settings
    from monitor.commands import retrain
    from monitor.errors import ValidationFailed

    section = _section(args)
    allowed = _settings().webhook_allowed_networks
    try:
        # Checked before the database is opened: a bad flag needs no database to be named.
        retrain.check_section(section, allowed_networks=allowed)
        added = _run_command(retrain.add_hook, section, allowed_networks=allowed, source="cli")
    except ValidationFailed as exc:
        details = exc.details or []
        if details and all(isinstance(d, dict) and "field" in d for d in details):
            named = "; ".join(
                f"{_FLAGS.get(str(d['field']).split('.')[0], d['field'])}: {d['message']}"
                for d in details
            )
            raise UsageError(named) from None
        raise
    hook = added.hook
    print(
        f"hook {hook.name} {'added' if added.created else 'replaced'}: {hook.kind} for model "
        f"{hook.model} ({_target(hook)}), timeout {_duration(hook.timeout_seconds)}, "
        f"cooldown {_duration(hook.cooldown_seconds)}" + ("" if hook.enabled else ", disabled")
    )
    if added.generated_secret is not None:
        print(f"secret: {added.generated_secret}")
        print("(shown once: give it to the pipeline, which verifies each request with it)")
    return 0


def _remove_hook(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command
    from monitor.commands import retrain

    _run_command(retrain.remove_hook, args.name)
    print(f"hook {args.name} removed (its runs stay recorded)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from monitor.cli import CommandFailed, _checked_engine, _settings
    from monitor.commands import retrain

    engine = _checked_engine()
    try:
        run = retrain.trigger(engine, args.hook)
        print(f"retrain run {run.id} of {run.model} (hook {run.hook}) queued")
        if not args.wait:
            print("the worker runs it; follow it with: edge-monitor retrain show " + str(run.id))
            return 0
        run = _wait(engine, _settings(), run)
    finally:
        engine.dispose()
    _print_run(run)
    if run.version is None or run.status in ("failed", "timed_out", "gated", "rolled_back"):
        raise CommandFailed(f"retrain run {run.id} {_outcome(run)}")
    return 0


def _wait(engine: Any, settings: Any, run: Any) -> Any:
    """Run the run here, then wait while it is running elsewhere (a worker took it first, or a
    webhook's pipeline has yet to report)."""
    from monitor.commands import retrain
    from monitor.jobs.retrain import run_queued

    while True:
        run_queued(engine, settings, run_id=run.id)
        run = retrain.get_run(engine, run.id)
        if run.status not in ("queued", "running"):
            return run
        time.sleep(_POLL_SECONDS)


def _outcome(run: Any) -> str:
    if run.status in ("produced", "canary", "promoted"):
        return f"produced version {run.version} ({run.status})"
    if run.status == "gated":
        return f"produced version {run.version}, stopped by the promotion gate"
    return run.status.replace("_", " ")


def _runs(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command, _table
    from monitor.commands import retrain

    found = _run_command(retrain.list_runs, model=args.model, limit=args.limit, status=args.status)
    if args.json:
        print(json.dumps([retrain.run_document(r) for r in found], indent=2))
        return 0
    if not found:
        print("no retrain runs")
        return 0
    rows = [
        (
            str(r.id),
            r.model,
            r.hook or "-",
            r.trigger + (f" (alert {r.alert_id})" if r.alert_id else ""),
            r.status,
            r.version or "-",
            r.created_at.isoformat(timespec="seconds"),
            "-" if r.finished_at is None else r.finished_at.isoformat(timespec="seconds"),
        )
        for r in found
    ]
    headers = ("ID", "MODEL", "HOOK", "TRIGGER", "STATUS", "VERSION", "QUEUED", "FINISHED")
    for line in _table(headers, rows):
        print(line)
    return 0


def _show(args: argparse.Namespace) -> int:
    from monitor.cli import _run_command
    from monitor.commands import retrain

    run = _run_command(retrain.get_run, args.id)
    if args.json:
        print(json.dumps(retrain.run_document(run), indent=2))
        return 0
    _print_run(run)
    return 0


#: Lines of a run's output that `retrain show` prints (the rest is in --json).
_TAIL_LINES = 40
#: Details the lines above already say.
_SAID = {"hook", "considered", "awaiting_result", "reported_at", "exit_code", "seconds"}


def _print_run(run: Any) -> None:
    print(f"retrain run {run.id} of {run.model} (hook {run.hook or '-'})")
    trigger = run.trigger + (f" by alert {run.alert_id}" if run.alert_id else "")
    print(f"  trigger:  {trigger}")
    print(f"  status:   {run.status}" + (" (holds its model)" if run.in_flight else ""))
    print(f"  version:  {run.version or '-'}")
    print(f"  queued:   {run.created_at.isoformat(timespec='seconds')}")
    for label, moment in (("started", run.started_at), ("finished", run.finished_at)):
        if moment is not None:
            print(f"  {label}:{' ' * (9 - len(label))}{moment.isoformat(timespec='seconds')}")
    if run.claimed_by:
        print(f"  worker:   {run.claimed_by}")
    if run.details.get("awaiting_result") and run.status == "running":
        print("  waiting for the pipeline's result (POST /v1/admin/retrain/runs/ID/result)")
    considered = run.details.get("considered")
    if isinstance(considered, dict):
        print(f"  promotion gate: given it at {considered.get('at')}")
    for key, value in run.details.items():
        if key not in _SAID:
            print(f"  {key}: {json.dumps(value, sort_keys=True, default=str)}")
    lines = run.output.splitlines()
    if lines:
        shown = lines[-_TAIL_LINES:]
        cut = len(lines) - len(shown)
        print("  output" + (f" (last {len(shown)} of {len(lines)} lines):" if cut else ":"))
        for line in shown:
            print(f"    {line}")
