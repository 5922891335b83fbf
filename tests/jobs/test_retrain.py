"""The retrain job: a queued run's hook runs, its outcome is recorded, and a produced version
goes to the promotion gate once (both databases).

The gate (``monitor.retrain.promotion``) is another module's; these tests point the job at
``consider`` below, which records what it was given, so that they judge the job alone."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.config import Settings
from monitor.jobs import retrain as job
from monitor.storage import registry, retrains
from monitor.storage.engine import begin_write
from monitor.storage.models import add_model

NOW = datetime(2026, 1, 1, tzinfo=UTC)
given_to_gate: list[int] = []
gate_verdict = {"status": "canary"}


def consider(engine: Engine, run_id: int, settings: Any) -> None:
    """The gate as the job sees it: it takes the run on from produced."""
    given_to_gate.append(run_id)
    if gate_verdict["status"] == "raise":
        raise RuntimeError("no held-out labels")
    with begin_write(engine) as conn:
        retrains.set_run(
            conn, run_id, status=gate_verdict["status"], now=NOW, details={"gate": "judged"}
        )


@pytest.fixture(autouse=True)
def gate(monkeypatch: pytest.MonkeyPatch) -> None:
    given_to_gate.clear()
    gate_verdict["status"] = "canary"
    monkeypatch.setattr(job, "PROMOTION", __name__)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def setup(engine: Engine, argv: list[str], *, timeout: float = 30) -> int:
    with begin_write(engine) as conn:
        model_id = add_model(conn, "pump-failure").id
        registry.register_version(conn, model_id, "1", artifact=b"onnx-1", card=None)
        registry.promote(conn, model_id, "1")
        # The version the hook will name, as if it had registered it.
        registry.register_version(conn, model_id, "2", artifact=b"onnx-2", card=None)
        retrains.upsert_hook(
            conn,
            name="nightly",
            model_id=model_id,
            kind="command",
            config={"argv": argv},
            timeout_seconds=timeout,
            cooldown_seconds=0,
            now=NOW,
        )
    return model_id


def request(engine: Engine, model_id: int) -> int:
    with begin_write(engine) as conn:
        run_id = retrains.request_run(
            conn, hook_name="nightly", model_id=model_id, alert_id=None, trigger="manual", now=NOW
        )
    assert run_id is not None
    return run_id


def run_of(engine: Engine, run_id: int) -> retrains.Run:
    with engine.connect() as conn:
        return retrains.get_run(conn, run_id)


VERSION_2 = python(
    "import json, sys\n"
    "context = json.load(sys.stdin)\n"
    "print('retraining', context['model'], 'from', context['production_version'])\n"
    "print(json.dumps({'version': '2'}))\n"
)


def test_a_queued_run_is_run_produces_its_version_and_goes_to_the_gate(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    model_id = setup(engine, VERSION_2)
    run_id = request(engine, model_id)

    with caplog.at_level(logging.INFO, logger="monitor.jobs.retrain"):
        assert job.run_queued(engine, settings, now=NOW, owner="w1") == 1

    run = run_of(engine, run_id)
    assert (run.status, run.version, run.claimed_by) == ("canary", "2", "w1")
    assert "retraining pump-failure from 1" in run.output
    assert run.details["considered"]["by"] == "w1" and run.details["gate"] == "judged"
    assert given_to_gate == [run_id]
    assert f"retrain run {run_id} of pump-failure (hook nightly): produced version 2" in caplog.text
    # Nothing is left to do, and the gate is not asked twice.
    assert job.run_queued(engine, settings, now=NOW, owner="w1") == 0
    assert given_to_gate == [run_id]


def test_the_hook_is_told_its_run_model_and_production_version(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    seen = tmp_path / "context.json"
    code = (
        "import json, sys\n"
        f"open({str(seen)!r}, 'w').write(sys.stdin.read())\n"
        'print(\'{"version": "2"}\')\n'
    )
    model_id = setup(engine, python(code))
    run_id = request(engine, model_id)
    job.run_queued(engine, settings, now=NOW)

    context = json.loads(seen.read_text())
    assert context["run_id"] == run_id
    assert (context["model"], context["hook"], context["kind"]) == (
        "pump-failure",
        "nightly",
        "command",
    )
    assert (context["trigger"], context["production_version"]) == ("manual", "1")
    assert context["versions"] == ["1", "2"]
    assert context["alert"] is None
    assert context["report"]["path"] == f"/v1/admin/retrain/runs/{run_id}/result"


def test_a_version_the_hook_did_not_register_fails_the_run(
    engine: Engine, settings: Settings
) -> None:
    model_id = setup(engine, python('print(\'{"version": "99"}\')'))
    run_id = request(engine, model_id)
    job.run_queued(engine, settings, now=NOW)

    run = run_of(engine, run_id)
    assert (run.status, run.version) == ("failed", None)
    assert "version '99' is not registered for model 'pump-failure'" in run.output
    assert given_to_gate == []


def test_a_failing_command_is_recorded_and_frees_the_model(
    engine: Engine, settings: Settings
) -> None:
    model_id = setup(engine, python("import sys; print('no data', file=sys.stderr); sys.exit(2)"))
    run_id = request(engine, model_id)
    job.run_queued(engine, settings, now=NOW)

    run = run_of(engine, run_id)
    assert run.status == "failed"
    assert "no data" in run.output and run.details["exit_code"] == 2
    assert run.finished_at == NOW
    request(engine, model_id)


def test_a_command_past_its_timeout_is_timed_out(engine: Engine, settings: Settings) -> None:
    model_id = setup(engine, python("import time; time.sleep(600)"), timeout=0.5)
    run_id = request(engine, model_id)
    job.run_queued(engine, settings, now=NOW)

    assert run_of(engine, run_id).status == "timed_out"


def test_without_the_gate_a_produced_run_waits_for_it(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job, "PROMOTION", "tests.jobs.no_such_promotion_module")
    model_id = setup(engine, VERSION_2)
    run_id = request(engine, model_id)
    job.run_queued(engine, settings, now=NOW)
    assert run_of(engine, run_id).status == "produced"
    assert "considered" not in run_of(engine, run_id).details

    # Once the gate is there, the next pass hands it over.
    monkeypatch.setattr(job, "PROMOTION", __name__)
    job.run_queued(engine, settings, now=NOW)
    assert (run_of(engine, run_id).status, given_to_gate) == ("canary", [run_id])


def test_a_gate_that_fails_fails_the_run_so_the_model_is_not_held(
    engine: Engine, settings: Settings
) -> None:
    gate_verdict["status"] = "raise"
    model_id = setup(engine, VERSION_2)
    run_id = request(engine, model_id)
    job.run_queued(engine, settings, now=NOW)

    run = run_of(engine, run_id)
    assert (run.status, run.version) == ("failed", "2")
    assert "the promotion gate failed: RuntimeError: no held-out labels" in run.output
    request(engine, model_id)


def test_a_run_reported_produced_from_outside_is_given_to_the_gate(
    engine: Engine, settings: Settings
) -> None:
    model_id = setup(engine, VERSION_2)
    run_id = request(engine, model_id)
    with begin_write(engine) as conn:
        retrains.claim_run(conn, owner="webhook-worker", now=NOW)
        retrains.set_run(conn, run_id, status="produced", now=NOW, version="2")
    assert job.run_queued(engine, settings, now=NOW) == 0

    assert (run_of(engine, run_id).status, given_to_gate) == ("canary", [run_id])


def test_a_run_whose_worker_died_is_failed_by_the_next_pass(
    engine: Engine, settings: Settings
) -> None:
    model_id = setup(engine, VERSION_2, timeout=60)
    run_id = request(engine, model_id)
    with begin_write(engine) as conn:
        retrains.claim_run(conn, owner="dead-worker", now=NOW)
    later = NOW + timedelta(seconds=60) + retrains.LOST_MARGIN
    job.run_queued(engine, settings, now=later)

    run = run_of(engine, run_id)
    assert run.status == "failed"
    assert "worker lost (dead-worker)" in run.output


def test_a_run_whose_hook_was_removed_fails(engine: Engine, settings: Settings) -> None:
    model_id = setup(engine, VERSION_2)
    run_id = request(engine, model_id)
    with begin_write(engine) as conn:
        retrains.delete_hook(conn, "nightly")
    assert job.run_queued(engine, settings, now=NOW) == 1

    run = run_of(engine, run_id)
    assert (run.status, run.output) == ("failed", "its hook was removed")


def test_a_run_an_alert_started_tells_its_hook_the_alert(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    from monitor.alerts.rules import Rule
    from monitor.storage import alert_rules, alerts

    seen = tmp_path / "context.json"
    code = (
        "import sys\n"
        f"open({str(seen)!r}, 'w').write(sys.stdin.read())\n"
        'print(\'{"version": "2"}\')\n'
    )
    model_id = setup(engine, python(code))
    with begin_write(engine) as conn:
        rule = alert_rules.upsert_rule(
            conn, Rule(name="accuracy", kind="scope_drift", model="pump-failure"), now=NOW
        )
        assert rule.id is not None
        alert_id = alerts.open_alert(
            conn,
            rule_id=rule.id,
            model_id=model_id,
            group_key="fleet",
            severity="critical",
            summary="accuracy 0.71 below 0.85 on the fleet",
            subjects=["fleet"],
            details={},
            window_start=NOW,
            now=NOW,
        )
        run_id = retrains.request_run(
            conn,
            hook_name="nightly",
            model_id=model_id,
            alert_id=alert_id,
            trigger="alert",
            now=NOW,
        )
    job.run_queued(engine, settings, now=NOW)

    context = json.loads(seen.read_text())
    assert (context["run_id"], context["trigger"]) == (run_id, "alert")
    assert context["alert"]["id"] == alert_id
    assert context["alert"]["rule"] == "accuracy"
    assert context["alert"]["summary"] == "accuracy 0.71 below 0.85 on the fleet"
