"""Running one hook: a command gets its context and is killed whole at its timeout, a Python
entry point returns its version, a webhook is signed; each failure is an outcome, not a raise."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts import signing
from monitor.retrain import hooks
from monitor.storage.retrains import Hook

CONTEXT = {"run_id": 7, "model": "pump", "trigger": "manual", "production_version": "3"}


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def hook(kind: str, config: dict[str, Any], timeout: float = 30.0) -> Hook:
    return Hook(
        id=1,
        name="nightly",
        model="pump",
        model_id=1,
        kind=kind,
        config=config,
        timeout_seconds=timeout,
        cooldown_seconds=0,
        enabled=True,
        source="api",
    )


def test_a_command_reads_its_context_on_stdin_and_in_its_environment() -> None:
    code = (
        "import json, os, sys\n"
        "stdin = json.load(sys.stdin)\n"
        "print(json.dumps({'stdin': stdin, 'run': os.environ['EDGE_MONITOR_RUN_ID'],\n"
        "  'model': os.environ['EDGE_MONITOR_MODEL'],\n"
        "  'env': json.loads(os.environ['EDGE_MONITOR_CONTEXT'])}))\n"
        'print(\'{"version": "4"}\')\n'
    )
    outcome = hooks.run_hook(hook("command", {"argv": python(code)}), CONTEXT)

    assert (outcome.status, outcome.version) == ("produced", "4")
    seen = json.loads(outcome.output.splitlines()[0])
    assert seen == {"stdin": CONTEXT, "run": "7", "model": "pump", "env": CONTEXT}
    assert outcome.details["exit_code"] == 0


def test_a_command_gets_its_hooks_env_beside_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", "sqlite:///worker.db")
    code = (
        "import os\n"
        "print(os.environ['MONITOR_DATABASE_URL'], os.environ['RECIPE'])\n"
        'print(\'{"version": "4"}\')\n'
    )
    config = {"argv": python(code), "env": {"RECIPE": "demo-mlp"}}
    outcome = hooks.run_hook(hook("command", config), CONTEXT)
    assert outcome.output.splitlines()[0] == "sqlite:///worker.db demo-mlp"


def test_the_version_is_the_last_stdout_json_line_that_names_one() -> None:
    code = (
        "import sys\n"
        'print(\'{"version": "1"}\')\n'
        "print('training...')\n"
        'print(\'{"version": "5", "accuracy": 0.9}\')\n'
        'print(\'{"note": "done"}\')\n'
        'print(\'{"version": "9"}\', file=sys.stderr)\n'
    )
    outcome = hooks.run_command(python(code), CONTEXT, 30)

    assert (outcome.status, outcome.version) == ("produced", "5")
    assert "training..." in outcome.output
    assert '--- stderr ---\n{"version": "9"}' in outcome.output


def test_a_command_that_exits_non_zero_fails_with_its_output() -> None:
    code = 'import sys; print(\'{"version": "4"}\'); print("boom", file=sys.stderr); sys.exit(3)'
    outcome = hooks.run_command(python(code), CONTEXT, 30)

    assert outcome.status == "failed" and outcome.version is None
    assert "boom" in outcome.output
    assert outcome.output.endswith("exited with status 3")


def test_a_command_that_names_no_version_produced_nothing() -> None:
    outcome = hooks.run_command(python("print('all good')"), CONTEXT, 30)

    assert outcome.status == "failed"
    assert "nothing was produced" in outcome.output


def test_a_command_that_cannot_start_fails() -> None:
    outcome = hooks.run_command(["/nonexistent/retrain"], CONTEXT, 30)
    assert outcome.status == "failed"
    assert "cannot start '/nonexistent/retrain'" in outcome.output
    assert hooks.run_command([], CONTEXT, 30).status == "failed"


def test_a_command_output_keeps_its_tail() -> None:
    code = "for i in range(2000): print('line', i, 'y' * 40)\nprint('THE END')"
    outcome = hooks.run_command(python(code), CONTEXT, 30)

    assert len(outcome.output) <= hooks.OUTPUT_LIMIT + 100
    assert outcome.output.startswith("[... ")
    assert "THE END" in outcome.output
    assert "line 1999" in outcome.output and "line 0 " not in outcome.output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is dead for our purpose.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(")")[-1].split()[0] != "Z"


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pids)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    outcome = hooks.run_command(python(code), CONTEXT, 1.0)

    assert outcome.status == "timed_out"
    assert "started" in outcome.output
    assert "timed out after 1 s" in outcome.output
    child = int(pids.read_text())
    # The grandchild was killed with its group; give the kernel a moment to reap it.
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.05)
    assert not _alive(child)


def test_a_command_that_ignores_its_stdin_does_not_block_on_a_large_context() -> None:
    big = {**CONTEXT, "versions": [str(i) for i in range(50_000)]}
    outcome = hooks.run_command(python('print(\'{"version": "2"}\')'), big, 30)
    assert (outcome.status, outcome.version) == ("produced", "2")


# --- python entry points (this module's functions) -------------------------------------------

RELEASE = threading.Event()
SEEN: list[dict[str, Any]] = []


def returns_a_dict(context: dict[str, Any]) -> dict[str, Any]:
    SEEN.append(context)
    return {"version": "8", "accuracy": 0.93}


def returns_a_string(context: dict[str, Any]) -> str:
    return f"v{context['run_id']}"


def returns_none(context: dict[str, Any]) -> None:
    return None


def raises(context: dict[str, Any]) -> str:
    raise RuntimeError(f"no labelled data for {context['model']}")


def waits(context: dict[str, Any]) -> str:
    RELEASE.wait()
    return "late"


ENTRY = f"{__name__}"


def test_a_python_entry_point_gets_the_context_and_returns_its_version() -> None:
    SEEN.clear()
    outcome = hooks.run_hook(hook("python", {"entry_point": f"{ENTRY}:returns_a_dict"}), CONTEXT)

    assert (outcome.status, outcome.version) == ("produced", "8")
    assert SEEN == [CONTEXT]
    assert "returned {'version': '8'" in outcome.output
    assert hooks.run_python(f"{ENTRY}:returns_a_string", CONTEXT, 30).version == "v7"


def test_a_python_entry_point_that_returns_none_produced_nothing() -> None:
    outcome = hooks.run_python(f"{ENTRY}:returns_none", CONTEXT, 30)
    assert outcome.status == "failed"
    assert "nothing was produced" in outcome.output


def test_a_python_entry_point_that_raises_fails_with_its_traceback_tail() -> None:
    outcome = hooks.run_python(f"{ENTRY}:raises", CONTEXT, 30)
    assert outcome.status == "failed"
    assert outcome.output.splitlines()[-1] == "RuntimeError: no labelled data for pump"
    assert "in raises" in outcome.output


@pytest.mark.parametrize(
    ("entry_point", "says"),
    [
        ("no_colon", "is not module:function"),
        ("tests.retrain.missing_module:fn", "No module named"),
        (f"{ENTRY}:missing_function", "has no attribute 'missing_function'"),
    ],
)
def test_an_entry_point_that_cannot_be_loaded_fails(entry_point: str, says: str) -> None:
    outcome = hooks.run_python(entry_point, CONTEXT, 30)
    assert outcome.status == "failed"
    assert says in outcome.output


def test_a_python_entry_point_past_its_timeout_is_given_up() -> None:
    RELEASE.clear()
    try:
        outcome = hooks.run_python(f"{ENTRY}:waits", CONTEXT, 0.2)
    finally:
        RELEASE.set()
    assert outcome.status == "timed_out"
    assert "cannot be killed" in outcome.output


# --- webhooks ---------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    answer: tuple[int, bytes] = (202, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((dict(self.headers.items()), body))
        status, content = type(self).answer
        self.send_response(status)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    _Receiver.answer = (202, b"")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/retrain"
    server.shutdown()
    server.server_close()


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def webhook(url: str) -> Hook:
    return hook("webhook", {"url": url, "secret": SECRET})


def test_a_webhook_is_signed_and_then_waits_for_the_pipeline(receiver: str) -> None:
    outcome = hooks.run_hook(webhook(receiver), CONTEXT, allowed_networks=["127.0.0.1/32"])

    assert outcome.status == "running"
    assert outcome.details["awaiting_result"] is True
    ((headers, body),) = _Receiver.received
    assert signing.verify(SECRET, headers, body) == "msg_retrain_run_7"
    sent = json.loads(body)
    assert sent["type"] == "retrain.requested" and sent["data"] == CONTEXT


def test_a_webhook_answered_with_a_version_produced_it(receiver: str) -> None:
    _Receiver.answer = (200, b'{"version": "12"}')
    outcome = hooks.run_hook(webhook(receiver), CONTEXT, allowed_networks=["127.0.0.1/32"])
    assert (outcome.status, outcome.version) == ("produced", "12")


@pytest.mark.parametrize("status", [302, 410, 500])
def test_a_webhook_answered_otherwise_than_2xx_fails(receiver: str, status: int) -> None:
    _Receiver.answer = (status, b"nope")
    outcome = hooks.run_hook(webhook(receiver), CONTEXT, allowed_networks=["127.0.0.1/32"])
    assert outcome.status == "failed"
    assert f"answered {status}: nope" in outcome.output


def test_a_webhook_to_loopback_is_refused_unless_allowed(receiver: str) -> None:
    outcome = hooks.run_hook(webhook(receiver), CONTEXT, allowed_networks=[])
    assert outcome.status == "failed"
    assert "refused target" in outcome.output and "loopback" in outcome.output
    assert _Receiver.received == []


def test_a_webhook_nobody_answers_fails(dead_url: str) -> None:
    outcome = hooks.run_hook(webhook(dead_url), CONTEXT, allowed_networks=["127.0.0.1/32"])
    assert outcome.status == "failed"
    assert "ConnectError" in outcome.output


def test_the_reference_kind_needs_the_database() -> None:
    assert hooks.run_hook(hook("reference", {}), CONTEXT).status == "failed"
