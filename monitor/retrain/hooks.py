"""Run one retrain hook for one run: a signed webhook, a command, a Python entry point, or the
bundled reference retrainer; what it produced comes back as an ``Outcome``.

The hook contract (README "Retraining hooks"):

- **command**: ``argv`` runs without a shell, in its own process group, with the run's context
  as JSON on stdin and in the environment (``EDGE_MONITOR_RUN_ID``, ``EDGE_MONITOR_MODEL``,
  ``EDGE_MONITOR_CONTEXT``), beside the worker's own environment (so that
  ``edge-monitor models register`` reaches the same database) and the hook's ``env`` table.
  The version it produced is read from the last stdout line that is a JSON object with
  ``"version"``. A non-zero exit fails the
  run; at the timeout the whole process group is killed (timed_out). stdout and stderr are kept,
  their last ``OUTPUT_LIMIT`` characters.
- **python**: ``module:function`` is imported and called with the context dict; it returns
  ``{"version": ...}``, a version string, or None (nothing produced). An exception fails the
  run with the traceback's last lines. At the timeout the run is given up (timed_out), but a
  Python thread cannot be killed: the function runs on in the background until it returns.
- **webhook**: a Standard Webhooks signed POST of ``{"type": "retrain.requested", ...}`` to the
  hook's URL; the pipeline reports its version later (``POST /v1/admin/retrain/runs/{id}/result``),
  or at once in a 2xx JSON answer ``{"version": ...}``. The run waits for the report until its
  timeout.
- **reference**: ``monitor.retrain.trainer.retrain`` in this process, in a thread, like python.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import Connection, Engine

from monitor.storage import registry
from monitor.storage.retrains import Hook, Run

log = logging.getLogger(__name__)

#: Characters of a hook's output that are kept: the tail, where the error usually is.
OUTPUT_LIMIT = 16_000
#: After the timeout's SIGTERM, how long the process group has to exit before SIGKILL.
KILL_GRACE_SECONDS = 2.0
#: How long the readers of a finished command may still drain its pipes (a grandchild that
#: left the process group may hold them open).
_DRAIN_SECONDS = 5.0
#: The environment variables a command hook gets.
ENV_RUN_ID, ENV_MODEL, ENV_CONTEXT = (
    "EDGE_MONITOR_RUN_ID",
    "EDGE_MONITOR_MODEL",
    "EDGE_MONITOR_CONTEXT",
)
#: The longest context ``EDGE_MONITOR_CONTEXT`` holds (Linux refuses one environment string of
#: more than 128 KiB); a longer one is replaced by ``{"run_id", "model", "truncated": true}``.
ENV_CONTEXT_LIMIT = 100_000
#: The newest registered versions a context lists.
CONTEXT_VERSIONS = 50
#: The event type of a retrain webhook.
WEBHOOK_EVENT = "retrain.requested"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a hook ended: ``produced`` (with its version), ``failed``, ``timed_out``, or
    ``running`` (a webhook accepted: the pipeline reports later)."""

    status: str
    version: str | None = None
    output: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """The last ``limit`` characters of ``text``, marked as cut when they are not all of it."""
    if len(text) <= limit:
        return text
    marker = f"[... {len(text) - limit + 40} characters cut ...]\n"
    return marker + text[-(limit - len(marker)) :]


def context_for(conn: Connection, run: Run, hook: Hook) -> dict[str, Any]:
    """What a hook is told about its run (JSON-safe, no secrets): the run, the model, its
    production and canary versions, every registered version, and the alert that started it."""
    deployment = registry.deployment(conn, run.model_id)
    return {
        "run_id": run.id,
        "model": run.model,
        "hook": hook.name,
        "kind": hook.kind,
        "trigger": run.trigger,
        "requested_at": run.created_at.isoformat(),
        "timeout_seconds": hook.timeout_seconds,
        "production_version": _name(deployment.production),
        "canary_version": _name(deployment.canary),
        "versions": [v.version for v in registry.versions(conn, run.model_id)][-CONTEXT_VERSIONS:],
        "alert": _alert(conn, run.alert_id),
        # Where a pipeline reports the version it registered (admin token): see the module doc.
        "report": {"method": "POST", "path": f"/v1/admin/retrain/runs/{run.id}/result"},
    }


def _name(version: Any) -> str | None:
    return None if version is None else str(version.version)


def _alert(conn: Connection, alert_id: int | None) -> dict[str, Any] | None:
    if alert_id is None:
        return None
    try:
        from monitor.storage import alerts
    except ImportError:  # the alerts' storage has not landed: say which alert at least
        return {"id": alert_id}
    try:
        found = alerts.get_alert(conn, alert_id)
    except Exception:  # a hook still runs without its alert's summary
        log.warning("alert %s of a retrain run could not be read", alert_id, exc_info=True)
        return {"id": alert_id}
    return _jsonable(found)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def run_hook(
    hook: Hook,
    context: dict[str, Any],
    *,
    engine: Engine | None = None,
    allowed_networks: list[str] | None = None,
    webhook_timeout: float = 15.0,
    say: Callable[[str], None] | None = None,
) -> Outcome:
    """Run ``hook`` for the run described by ``context``; never raises for the hook's own
    failures (they are the outcome). ``engine`` is the reference retrainer's;
    ``allowed_networks`` and ``webhook_timeout`` are the settings' for webhooks."""
    if hook.kind == "command":
        extra = hook.config.get("env")
        return run_command(
            list(hook.config.get("argv") or []),
            context,
            hook.timeout_seconds,
            env=dict(extra) if isinstance(extra, Mapping) else None,
        )
    if hook.kind == "python":
        return run_python(str(hook.config.get("entry_point") or ""), context, hook.timeout_seconds)
    if hook.kind == "webhook":
        return send_webhook(
            str(hook.config.get("url") or ""),
            str(hook.config.get("secret") or ""),
            context,
            allowed_networks=allowed_networks or [],
            timeout=webhook_timeout,
        )
    if hook.kind == "reference":
        if engine is None:
            return Outcome("failed", output="the reference retrainer needs the database")
        return run_reference(engine, context, hook.timeout_seconds, say=say)
    return Outcome("failed", output=f"unknown hook kind {hook.kind!r}")


# --- command ---------------------------------------------------------------------------------


class _Reader(threading.Thread):
    """Drains one pipe, keeping its tail and the last JSON line that names a version."""

    def __init__(self, stream: IO[bytes], *, versions: bool) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.versions = versions
        self.chunks: deque[str] = deque()
        self.size = 0
        self.total = 0
        self.version: str | None = None

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            # Bounded reads: a line without end cannot fill the worker's memory.
            for raw in iter(lambda: self.stream.readline(65536), b""):
                line = raw.decode("utf-8", "replace")
                self._keep(line)
                if self.versions:
                    found = version_of_line(line)
                    if found is not None:
                        self.version = found

    def _keep(self, line: str) -> None:
        self.chunks.append(line)
        self.size += len(line)
        self.total += len(line)
        while self.size > OUTPUT_LIMIT and len(self.chunks) > 1:
            self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        text = "".join(self.chunks)
        if self.total > len(text):
            text = f"[... {self.total - len(text)} characters cut ...]\n" + text
        return text


def version_of_line(line: str) -> str | None:
    """The version a stdout line names: a JSON object with a non-empty ``"version"``."""
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    version = value.get("version") if isinstance(value, dict) else None
    if isinstance(version, int | float) and not isinstance(version, bool):
        version = str(version)
    return version if isinstance(version, str) and version.strip() else None


def _environment(
    context: dict[str, Any], payload: str, extra: Mapping[str, str] | None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    env[ENV_RUN_ID] = str(context.get("run_id", ""))
    env[ENV_MODEL] = str(context.get("model", ""))
    if len(payload) > ENV_CONTEXT_LIMIT:
        # The kernel refuses a larger environment string (E2BIG); stdin has all of it.
        payload = json.dumps(
            {"run_id": context.get("run_id"), "model": context.get("model"), "truncated": True}
        )
    env[ENV_CONTEXT] = payload
    return env


def run_command(
    argv: list[str],
    context: dict[str, Any],
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
) -> Outcome:
    """Run ``argv`` (no shell) with the context on stdin and in the environment, beside the
    worker's environment and the hook's ``env``."""
    if not argv or not all(isinstance(a, str) for a in argv):
        return Outcome("failed", output="the hook's argv is not a list of strings")
    payload = json.dumps(context, sort_keys=True)
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_environment(context, payload, env),
            # Its own process group, so that a timeout kills what it started as well.
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome("failed", output=f"cannot start {argv[0]!r}: {exc}")
    assert process.stdin and process.stdout and process.stderr
    out = _Reader(process.stdout, versions=True)
    err = _Reader(process.stderr, versions=False)
    out.start()
    err.start()
    writer = threading.Thread(target=_feed, args=(process.stdin, payload.encode()), daemon=True)
    writer.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
    for reader in (out, err):
        reader.join(_DRAIN_SECONDS)
    if out.is_alive() or err.is_alive():
        # Something the command left behind holds its pipes open: it goes with the command.
        _signal_group(process.pid, signal.SIGKILL)
        for reader in (out, err):
            reader.join(_DRAIN_SECONDS)
    for pipe in (process.stdout, process.stderr):
        pipe.close()
    output = _combined(out.text(), err.text())
    elapsed = round(time.monotonic() - started, 3)
    details: dict[str, Any] = {"exit_code": process.returncode, "seconds": elapsed}
    if timed_out:
        note = f"timed out after {timeout:g} s: the process group was killed"
        return Outcome("timed_out", output=tail(_append(output, note)), details=details)
    if process.returncode != 0:
        note = f"exited with status {process.returncode}"
        return Outcome("failed", output=tail(_append(output, note)), details=details)
    if out.version is None:
        note = 'finished without a stdout line {"version": ...}: nothing was produced'
        return Outcome("failed", output=tail(_append(output, note)), details=details)
    return Outcome("produced", version=out.version, output=tail(output), details=details)


def _feed(stdin: IO[bytes], data: bytes) -> None:
    # A command that never reads its stdin must not block the worker on a full pipe.
    with contextlib.suppress(OSError, ValueError):
        stdin.write(data)
    with contextlib.suppress(OSError, ValueError):
        stdin.close()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL to what is left after a grace."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_GRACE_SECONDS)
    # The group's other members may outlive the leader's exit; they go too.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _combined(stdout: str, stderr: str) -> str:
    if not stderr:
        return stdout
    if not stdout:
        return stderr
    return f"{stdout.rstrip(chr(10))}\n--- stderr ---\n{stderr}"


def _append(output: str, line: str) -> str:
    return f"{output.rstrip(chr(10))}\n{line}" if output else line


# --- python and reference --------------------------------------------------------------------


def load_entry_point(entry_point: str) -> Callable[..., Any]:
    """The function ``module:function`` names (``function`` may be dotted: ``Class.method``)."""
    module_name, sep, attribute = entry_point.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{entry_point!r} is not module:function")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{entry_point} is not callable")
    return target


def _in_thread(
    name: str, call: Callable[[], Any], timeout: float
) -> tuple[bool, Any, BaseException | None]:
    """Run ``call`` in a daemon thread; (finished, result, error). At the timeout it is given
    up, not stopped: Python cannot kill a thread, so it runs on until it returns."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as exc:  # reported as the run's failure
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False, None, None
    return True, box.get("result"), box.get("error")


def _traceback_tail(error: BaseException, lines: int = 12) -> str:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _returned_version(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("version")
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and value.strip() else None


def run_python(entry_point: str, context: dict[str, Any], timeout: float) -> Outcome:
    """Call ``module:function`` with the context dict."""
    try:
        function = load_entry_point(entry_point)
    except Exception as exc:
        return Outcome("failed", output=f"cannot load {entry_point!r}:\n{_traceback_tail(exc)}")
    started = time.monotonic()
    finished, result, error = _in_thread(
        f"retrain-{context.get('run_id')}", lambda: function(dict(context)), timeout
    )
    details = {"seconds": round(time.monotonic() - started, 3)}
    if not finished:
        note = (
            f"timed out after {timeout:g} s; {entry_point} runs on in a thread that cannot be "
            "killed, and what it returns is ignored"
        )
        return Outcome("timed_out", output=note, details=details)
    if error is not None:
        return Outcome("failed", output=tail(_traceback_tail(error)), details=details)
    version = _returned_version(result)
    shown = tail(f"{entry_point} returned {result!r}")
    if version is None:
        return Outcome(
            "failed", output=_append(shown, "nothing was produced (no version)"), details=details
        )
    return Outcome("produced", version=version, output=shown, details=details)


def run_reference(
    engine: Engine,
    context: dict[str, Any],
    timeout: float,
    *,
    say: Callable[[str], None] | None = None,
) -> Outcome:
    """The bundled reference retrainer, in a thread of this process."""
    try:
        from monitor.retrain import trainer
    except ImportError as exc:
        return Outcome("failed", output=f"the reference retrainer is not available: {exc}")
    said: deque[str] = deque()
    size = [0]

    def note(line: str) -> None:
        said.append(line)
        size[0] += len(line) + 1
        while size[0] > OUTPUT_LIMIT and len(said) > 1:
            size[0] -= len(said.popleft()) + 1
        if say is not None:
            say(line)

    started = time.monotonic()
    finished, result, error = _in_thread(
        f"retrain-{context.get('run_id')}",
        lambda: trainer.retrain(
            engine, str(context["model"]), run_id=int(context["run_id"]), say=note
        ),
        timeout,
    )
    details = {"seconds": round(time.monotonic() - started, 3)}
    output = "\n".join(said)
    if not finished:
        note_text = (
            f"timed out after {timeout:g} s; the reference retrainer runs on in a thread that "
            "cannot be killed, and what it registers is not taken"
        )
        return Outcome("timed_out", output=tail(_append(output, note_text)), details=details)
    if error is not None:
        return Outcome(
            "failed", output=tail(_append(output, _traceback_tail(error))), details=details
        )
    version = _returned_version(result)
    if version is None:
        return Outcome(
            "failed", output=tail(_append(output, "no version was registered")), details=details
        )
    return Outcome("produced", version=version, output=tail(output), details=details)


# --- webhook ---------------------------------------------------------------------------------


def webhook_body(context: dict[str, Any], *, now: datetime | None = None) -> bytes:
    """The JSON a retrain webhook sends: ``{"type", "timestamp", "data": context}``."""
    moment = now or datetime.now(UTC)
    return json.dumps(
        {"type": WEBHOOK_EVENT, "timestamp": moment.isoformat(), "data": context},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def webhook_message_id(run_id: int) -> str:
    """The ``webhook-id`` of a run's request: stable, so a receiver can deduplicate it."""
    return f"msg_retrain_run_{run_id}"


def send_webhook(
    url: str,
    secret: str,
    context: dict[str, Any],
    *,
    allowed_networks: list[str],
    timeout: float,
) -> Outcome:
    """POST the signed request; ``running`` once a 2xx answer accepted it (``produced`` when
    the answer is a JSON object with a version), ``failed`` otherwise (3xx included)."""
    import httpx

    from monitor.alerts.signing import headers
    from monitor.alerts.targets import RefusedTarget, check_target

    try:
        check_target(url, allowed_networks)
    except (RefusedTarget, ValueError) as exc:
        return Outcome("failed", output=f"refused target {url}: {exc}")
    body = webhook_body(context)
    message_id = webhook_message_id(int(context.get("run_id", 0)))
    signed = headers(secret, message_id, int(time.time()), body)
    signed["user-agent"] = "edge-monitor-retrain"
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            response = client.post(url, content=body, headers=signed)
    except httpx.HTTPError as exc:
        return Outcome("failed", output=f"POST {url} failed: {type(exc).__name__}: {exc}")
    details = {"webhook": {"message_id": message_id, "status_code": response.status_code}}
    answer = tail(response.text, 2000)
    if not 200 <= response.status_code < 300:
        output = f"POST {url} answered {response.status_code}" + (f": {answer}" if answer else "")
        return Outcome("failed", output=output, details=details)
    version = None
    with contextlib.suppress(ValueError):
        version = _returned_version(response.json())
    if version is not None:
        return Outcome(
            "produced",
            version=version,
            output=f"POST {url} answered {response.status_code} with version {version}",
            details=details,
        )
    return Outcome(
        "running",
        output=f"POST {url} answered {response.status_code}; waiting for the pipeline's result",
        details={**details, "awaiting_result": True},
    )


__all__ = [
    "ENV_CONTEXT",
    "ENV_MODEL",
    "ENV_RUN_ID",
    "OUTPUT_LIMIT",
    "Outcome",
    "context_for",
    "load_entry_point",
    "run_command",
    "run_hook",
    "run_python",
    "run_reference",
    "send_webhook",
    "tail",
    "version_of_line",
    "webhook_body",
    "webhook_message_id",
]
