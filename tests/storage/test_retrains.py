"""Retrain hooks and runs: cooldown, one run in flight per model, claiming, lost workers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage import retrains
from monitor.storage.engine import begin_write
from monitor.storage.models import add_model

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def setup(engine: Engine, *, cooldown: int = 0, timeout: float = 60.0) -> int:
    with begin_write(engine) as conn:
        model_id = add_model(conn, "pump").id
        for name in ("nightly", "other"):
            retrains.upsert_hook(
                conn,
                name=name,
                model_id=model_id,
                kind="command",
                config={"argv": ["true"]},
                timeout_seconds=timeout,
                cooldown_seconds=cooldown,
                now=NOW,
            )
    return model_id


def request(engine: Engine, model_id: int, *, hook: str = "nightly", at: datetime = NOW):
    with begin_write(engine) as conn:
        return retrains.request_run(
            conn, hook_name=hook, model_id=model_id, alert_id=None, trigger="alert", now=at
        )


def finish(engine: Engine, run_id: int, status: str, at: datetime = NOW) -> None:
    with begin_write(engine) as conn:
        retrains.set_run(conn, run_id, status=status, now=at)


def test_a_hook_reads_back_as_stored_and_upserting_keeps_its_id(engine: Engine) -> None:
    model_id = setup(engine)
    with begin_write(engine) as conn:
        first = retrains.hook_by_name(conn, "nightly")
        again = retrains.upsert_hook(
            conn,
            name="nightly",
            model_id=model_id,
            kind="python",
            config={"entry_point": "pkg.mod:fn"},
            timeout_seconds=5,
            cooldown_seconds=10,
            enabled=False,
            source="file",
            now=NOW,
        )
    assert first is not None and first.kind == "command" and first.model == "pump"
    assert first.config == {"argv": ["true"]}
    assert again.id == first.id
    assert (again.kind, again.config, again.enabled, again.source) == (
        "python",
        {"entry_point": "pkg.mod:fn"},
        False,
        "file",
    )
    with engine.connect() as conn:
        assert [h.name for h in retrains.list_hooks(conn, model_id=model_id)] == [
            "nightly",
            "other",
        ]
        assert [h.name for h in retrains.list_hooks(conn, source="file")] == ["nightly"]


def test_a_hook_of_an_unknown_kind_or_model_is_refused_with_its_field(engine: Engine) -> None:
    model_id = setup(engine)
    with pytest.raises(ValidationFailed) as refused, begin_write(engine) as conn:
        retrains.upsert_hook(
            conn,
            name="x",
            model_id=model_id,
            kind="carrier-pigeon",
            config={},
            timeout_seconds=0,
            cooldown_seconds=0,
            now=NOW,
        )
    assert {d["field"] for d in refused.value.details} == {"hook.kind", "hook.timeout_seconds"}
    with pytest.raises(NotFound), begin_write(engine) as conn:
        retrains.upsert_hook(
            conn,
            name="x",
            model_id=model_id + 99,
            kind="reference",
            config={},
            timeout_seconds=1,
            cooldown_seconds=0,
            now=NOW,
        )


def test_a_requested_run_is_queued_and_recorded_with_its_trigger(engine: Engine) -> None:
    model_id = setup(engine)
    run_id = request(engine, model_id)
    assert run_id is not None
    with engine.connect() as conn:
        run = retrains.get_run(conn, run_id)
    assert (run.status, run.trigger, run.hook, run.model) == ("queued", "alert", "nightly", "pump")
    assert run.details["hook"] == {"name": "nightly", "kind": "command", "timeout_seconds": 60.0}


@pytest.mark.parametrize("holding", ["queued", "running", "produced", "canary"])
def test_one_run_in_flight_per_model_across_its_hooks(engine: Engine, holding: str) -> None:
    model_id = setup(engine)
    first = request(engine, model_id)
    assert first is not None
    finish(engine, first, holding)

    assert request(engine, model_id, hook="nightly") is None
    assert request(engine, model_id, hook="other") is None


@pytest.mark.parametrize("ended", ["failed", "timed_out", "gated", "promoted", "rolled_back"])
def test_a_finished_run_frees_its_model(engine: Engine, ended: str) -> None:
    model_id = setup(engine)
    first = request(engine, model_id)
    assert first is not None
    finish(engine, first, ended)

    assert request(engine, model_id) is not None


def test_a_hook_cooling_down_queues_nothing_until_its_cooldown_has_passed(engine: Engine) -> None:
    model_id = setup(engine, cooldown=3600)
    first = request(engine, model_id)
    assert first is not None
    finish(engine, first, "failed")

    assert request(engine, model_id, at=NOW + timedelta(minutes=59)) is None
    # The cooldown is the hook's own: another hook of the model may run.
    other = request(engine, model_id, hook="other", at=NOW + timedelta(minutes=59))
    assert other is not None
    finish(engine, other, "failed")
    assert request(engine, model_id, at=NOW + timedelta(hours=1)) is not None


def test_a_disabled_unknown_or_foreign_hook_queues_nothing(engine: Engine) -> None:
    model_id = setup(engine)
    with begin_write(engine) as conn:
        other_model = add_model(conn, "fan").id
        hook = retrains.hook_by_name(conn, "other")
        assert hook is not None
        retrains.upsert_hook(
            conn,
            name="other",
            model_id=model_id,
            kind=hook.kind,
            config=hook.config,
            timeout_seconds=hook.timeout_seconds,
            cooldown_seconds=0,
            enabled=False,
            now=NOW,
        )
    assert request(engine, model_id, hook="other") is None
    assert request(engine, model_id, hook="missing") is None
    assert request(engine, other_model, hook="nightly") is None
    with engine.connect() as conn:
        assert retrains.list_runs(conn) == []


def test_a_manual_run_says_why_it_is_refused(engine: Engine) -> None:
    model_id = setup(engine, cooldown=3600)
    with begin_write(engine) as conn:
        hook = retrains.get_hook(conn, "nightly")
        run = retrains.queue_run(conn, hook, now=NOW)
    assert run.trigger == "manual"
    with pytest.raises(Conflict) as busy, begin_write(engine) as conn:
        retrains.queue_run(conn, hook, now=NOW)
    assert busy.value.code == "retrain_in_flight"
    finish(engine, run.id, "failed")
    with pytest.raises(Conflict) as cooling, begin_write(engine) as conn:
        retrains.queue_run(conn, hook, now=NOW + timedelta(minutes=1))
    assert cooling.value.code == "cooling_down"
    assert request(engine, model_id, at=NOW + timedelta(hours=2)) is not None


def test_two_concurrent_requests_for_one_model_queue_one_run(engine: Engine) -> None:
    model_id = setup(engine)
    results: list[int | None] = []
    holding = threading.Event()
    release = threading.Event()

    def first() -> None:
        with begin_write(engine) as conn:
            results.append(
                retrains.request_run(
                    conn,
                    hook_name="nightly",
                    model_id=model_id,
                    alert_id=None,
                    trigger="alert",
                    now=NOW,
                )
            )
            holding.set()
            release.wait()

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait()
    second = threading.Thread(
        target=lambda: results.append(request(engine, model_id, hook="other"))
    )
    second.start()
    release.set()
    thread.join()
    second.join()

    assert results[0] is not None
    assert results[1] is None
    with engine.connect() as conn:
        assert len(retrains.list_runs(conn, model_id=model_id)) == 1


def test_set_run_merges_details_and_stamps_start_and_finish(engine: Engine) -> None:
    model_id = setup(engine)
    run_id = request(engine, model_id)
    assert run_id is not None
    later = NOW + timedelta(minutes=5)
    with begin_write(engine) as conn:
        retrains.set_run(conn, run_id, status="running", now=NOW, details={"a": 1})
        retrains.set_run(
            conn, run_id, status="produced", now=later, version="4", output="ok", details={"b": 2}
        )
        run = retrains.get_run(conn, run_id)
    assert (run.status, run.version, run.output) == ("produced", "4", "ok")
    assert run.details["a"] == 1 and run.details["b"] == 2 and "hook" in run.details
    assert (run.started_at, run.finished_at) == (NOW, later)


def test_workers_claim_distinct_queued_runs_oldest_first(engine: Engine) -> None:
    model_id = setup(engine)
    with begin_write(engine) as conn:
        fan = add_model(conn, "fan").id
        retrains.upsert_hook(
            conn,
            name="fan-hook",
            model_id=fan,
            kind="reference",
            config={},
            timeout_seconds=60,
            cooldown_seconds=0,
            now=NOW,
        )
    first = request(engine, model_id)
    second = request(engine, fan, hook="fan-hook")
    with begin_write(engine) as conn:
        a = retrains.claim_run(conn, owner="w1", now=NOW)
        b = retrains.claim_run(conn, owner="w2", now=NOW)
        c = retrains.claim_run(conn, owner="w3", now=NOW)
    assert a is not None and b is not None and c is None
    assert (a.id, a.status, a.claimed_by, a.started_at) == (first, "running", "w1", NOW)
    assert (b.id, b.claimed_by) == (second, "w2")


def test_a_run_whose_worker_died_is_failed_so_the_model_is_free_again(engine: Engine) -> None:
    model_id = setup(engine, timeout=60)
    run_id = request(engine, model_id)
    with begin_write(engine) as conn:
        retrains.claim_run(conn, owner="w1", now=NOW)
    almost = NOW + timedelta(seconds=60) + retrains.LOST_MARGIN - timedelta(seconds=1)
    with begin_write(engine) as conn:
        assert retrains.reap(conn, now=almost) == []
    with begin_write(engine) as conn:
        (ended,) = retrains.reap(conn, now=almost + timedelta(seconds=1))
    assert (ended.id, ended.status, ended.details["worker_lost"]) == (run_id, "failed", True)
    assert "worker lost (w1)" in ended.output
    assert request(engine, model_id, at=almost + timedelta(seconds=2)) is not None


def test_a_run_awaiting_an_external_result_times_out_after_its_hook_timeout(
    engine: Engine,
) -> None:
    model_id = setup(engine, timeout=600)
    run_id = request(engine, model_id)
    assert run_id is not None
    with begin_write(engine) as conn:
        retrains.claim_run(conn, owner="w1", now=NOW)
        retrains.set_run(conn, run_id, status="running", now=NOW, details={"awaiting_result": True})
    with begin_write(engine) as conn:
        assert retrains.reap(conn, now=NOW + timedelta(seconds=599)) == []
        (ended,) = retrains.reap(conn, now=NOW + timedelta(seconds=600))
    assert ended.status == "timed_out"
    assert "no result reported" in ended.output


def test_a_produced_run_is_handed_to_the_gate_once(engine: Engine) -> None:
    model_id = setup(engine)
    run_id = request(engine, model_id)
    assert run_id is not None
    finish(engine, run_id, "produced")
    hour = timedelta(hours=1)
    with begin_write(engine) as conn:
        taken = retrains.claim_consideration(conn, owner="w1", now=NOW, retry_after=hour)
        again = retrains.claim_consideration(conn, owner="w2", now=NOW, retry_after=hour)
    assert taken is not None and taken.id == run_id
    assert taken.details["considered"]["by"] == "w1"
    assert again is None
    # A worker that died while the gate judged it: another takes the run over later.
    with begin_write(engine) as conn:
        later = retrains.claim_consideration(conn, owner="w2", now=NOW + hour, retry_after=hour)
    assert later is not None and later.details["considered"]["by"] == "w2"


def test_runs_list_newest_first_and_outlive_their_hook(engine: Engine) -> None:
    model_id = setup(engine)
    first = request(engine, model_id)
    assert first is not None
    finish(engine, first, "failed")
    second = request(engine, model_id, hook="other")
    with begin_write(engine) as conn:
        assert retrains.delete_hook(conn, "nightly")
        assert not retrains.delete_hook(conn, "nightly")
    with engine.connect() as conn:
        runs = retrains.list_runs(conn, model_id=model_id)
        assert [r.id for r in retrains.list_runs(conn, limit=1)] == [second]
        assert retrains.list_runs(conn, status="failed")[0].id == first
        with pytest.raises(NotFound):
            retrains.get_run(conn, 9999)
    assert [r.id for r in runs] == [second, first]
    assert (runs[1].hook_id, runs[1].hook) == (None, "nightly")
