"""The retrain job: run queued retrain runs' hooks and hand what they produced to the gate.

One pass (``run_queued``): end the runs no one will finish (a pipeline that never reported, a
worker that died: ``storage.retrains.reap``); hand every produced run not yet considered to the
promotion gate; then claim queued runs one at a time, run each hook outside any transaction and
record how it went. A produced version must be registered for the run's model, else the run
fails. Runs produced elsewhere (an external pipeline reporting through the admin API, which must
not run the gate itself) are picked up by the next pass: ``details["considered"]`` marks a run
the gate has been given, so that it is given it once.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from monitor.jobs.owner import process_owner
from monitor.retrain import hooks
from monitor.storage import registry
from monitor.storage import retrains as store
from monitor.storage.engine import begin_write
from monitor.storage.retrains import Run
from monitor.storage.types import utcnow

log = logging.getLogger(__name__)

#: The module whose ``consider(engine, run_id, settings)`` runs the promotion gate.
PROMOTION = "monitor.retrain.promotion"
#: A produced run given to the gate by a worker that then went silent is given again after this.
CONSIDER_RETRY = timedelta(hours=1)


def run_queued(
    engine: Engine,
    settings: Any,
    *,
    now: datetime | None = None,
    owner: str | None = None,
    run_id: int | None = None,
) -> int:
    """One pass of the retrain job; the number of runs whose hook it ran. ``now`` fixes the
    clock (tests); ``run_id`` runs that queued run only (``retrain run --wait``)."""
    owner = owner or process_owner()

    def clock() -> datetime:
        return now or utcnow()

    with begin_write(engine) as conn:
        ended = store.reap(conn, now=clock())
    for lost in ended:
        log.warning("%s: %s (%s)", _label(lost), lost.status, _last_line(lost.output))
    consider_produced(engine, settings, owner=owner, clock=clock)
    count = 0
    while True:
        with begin_write(engine) as conn:
            run = store.claim_run(conn, owner=owner, now=clock(), run_id=run_id)
            if run is None:
                break
            hook = store.hook_by_name(conn, run.hook) if run.hook_id and run.hook else None
            context = hooks.context_for(conn, run, hook) if hook is not None else {}
        count += 1
        if hook is None:
            _record(engine, run, hooks.Outcome("failed", output="its hook was removed"), clock())
            continue
        log.info("%s: running its %s hook", _label(run), hook.kind)
        outcome = hooks.run_hook(
            hook,
            context,
            engine=engine,
            allowed_networks=list(getattr(settings, "webhook_allowed_networks", []) or []),
            webhook_timeout=float(getattr(settings, "webhook_timeout_seconds", 15.0)),
            say=_say(run),
        )
        _record(engine, run, outcome, clock())
        if run_id is not None:
            break
    consider_produced(engine, settings, owner=owner, clock=clock)
    return count


def _say(run: Run) -> Callable[[str], None]:
    """Where the reference retrainer's progress lines go: the worker's log, under the run."""

    def say(line: str) -> None:
        log.info("%s: %s", _label(run), line)

    return say


def _record(engine: Engine, run: Run, outcome: hooks.Outcome, now: datetime) -> None:
    """Store the hook's outcome, unless the run was ended meanwhile (a pipeline reported, or it
    was reaped): then only the hook's details are added."""
    status, version, output = outcome.status, outcome.version, outcome.output
    with begin_write(engine) as conn:
        current = store.lock_run(conn, run.id)
        if current.status != "running" or current.claimed_by != run.claimed_by:
            store.set_run(conn, run.id, status=current.status, now=now, details=outcome.details)
            log.info(
                "%s: already %s, its hook's outcome was %s", _label(run), current.status, status
            )
            return
        if (
            status == "produced"
            and version is not None
            and registry.find_version(conn, run.model_id, version) is None
        ):
            status, version = "failed", None
            output = hooks.tail(
                f"{output}\nversion {outcome.version!r} is not registered for model "
                f"{run.model!r}: register it (edge-monitor models register) before naming it"
            )
        store.set_run(
            conn,
            run.id,
            status=status,
            now=now,
            version=version,
            output=output,
            details=outcome.details,
        )
    if status == "produced":
        log.info("%s: produced version %s", _label(run), version)
    elif status == "running":
        log.info("%s: %s", _label(run), _last_line(output))
    else:
        log.warning("%s: %s (%s)", _label(run), status, _last_line(output))


def consider_produced(
    engine: Engine,
    settings: Any,
    *,
    owner: str | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Give every produced run the gate has not considered to
    ``monitor.retrain.promotion.consider``; the number given. Without that module, produced runs
    wait for it."""
    if importlib.util.find_spec(PROMOTION) is None:
        return 0
    promotion = importlib.import_module(PROMOTION)
    owner = owner or process_owner()
    given = 0
    while True:
        with begin_write(engine) as conn:
            run = store.claim_consideration(
                conn, owner=owner, now=clock(), retry_after=CONSIDER_RETRY
            )
        if run is None:
            return given
        given += 1
        log.info("%s: version %s goes to the promotion gate", _label(run), run.version)
        try:
            promotion.consider(engine, run.id, settings)
        except Exception as exc:
            # A gate that cannot judge must not hold the model forever: the run fails.
            log.exception("%s: the promotion gate failed", _label(run))
            with begin_write(engine) as conn:
                current = store.lock_run(conn, run.id)
                if current.status == "produced":
                    store.set_run(
                        conn,
                        run.id,
                        status="failed",
                        now=clock(),
                        output=hooks.tail(
                            f"{current.output}\nthe promotion gate failed: "
                            f"{type(exc).__name__}: {exc}"
                        ),
                        details={"promotion_error": f"{type(exc).__name__}: {exc}"},
                    )
            continue
        with engine.connect() as conn:
            after = store.get_run(conn, run.id)
        log.info("%s: %s", _label(after), _gate_line(after))


def _gate_line(run: Run) -> str:
    if run.status == "canary":
        return f"version {run.version} passed the gate: canary started"
    if run.status == "gated":
        return f"version {run.version} was stopped by the gate"
    return f"version {run.version} is {run.status} after the gate"


def _label(run: Run) -> str:
    return f"retrain run {run.id} of {run.model} (hook {run.hook or '?'})"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


__all__ = ["CONSIDER_RETRY", "PROMOTION", "consider_produced", "run_queued"]
