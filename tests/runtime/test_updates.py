"""Hot swap through the assignment/artifact contract: no failed or stalled call, one version
flip, refused artifacts leave the old model serving, and records keep their own version."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.runtime import EdgeRuntime, ModelCard, ModelUpdater, VersionedMonitors
from monitor.sdk import Monitor

from .registry import TOKEN, RegistryServer

MODEL = "pump-failure"
SLOW_SWAP = 0.3


def v2_card(card: ModelCard) -> dict[str, Any]:
    return card.with_version("2").to_dict()


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def test_two_thousand_requests_across_a_hot_swap(
    demo: Any,
    card: ModelCard,
    rows: list[dict[str, Any]],
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    # Real SDK Monitors, one per version, shipping to the fake collector.
    factory = VersionedMonitors(
        registry.url,
        TOKEN,
        MODEL,
        spool_root=tmp_path / "spool",
        flush_interval=0.05,
        spool_flush_interval=0.05,
        heartbeat_interval=None,
    )

    def slow_factory(version: str, telemetry: Any) -> Monitor:
        # A slow swap: a call that waited for it would take at least this long.
        if version == "2":
            time.sleep(SLOW_SWAP)
        return factory(version, telemetry)

    runtime = EdgeRuntime(demo.model, monitor=slow_factory)
    updater = ModelUpdater(runtime, registry.url, TOKEN, interval=60)
    int8 = Path(demo.model_int8).read_bytes()
    registry.state.publish(MODEL, "2", int8, v2_card(card))

    n_threads, per_thread = 4, 500
    results: dict[int, list[tuple[float, float, str, str]]] = {k: [] for k in range(n_threads)}
    errors: list[BaseException] = []
    started = threading.Barrier(n_threads + 1)
    done = threading.Event()
    progress = [0]

    def client(k: int) -> None:
        started.wait()
        try:
            for i in range(per_thread):
                row = rows[(k * per_thread + i) % len(rows)]
                t0 = time.perf_counter()
                p = runtime.predict(row, request_id=f"t{k}-{i}")
                results[k].append((t0, time.perf_counter(), p.model_version, p.request_id))
                progress[0] += 1
                # Pace the clients so the swap lands in the middle of every thread's run.
                time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    started.wait()
    assert wait_for(lambda: progress[0] >= 400)
    swap_start = time.perf_counter()
    assert updater.poll_once() == "swapped"
    swap_end = time.perf_counter()
    for t in threads:
        t.join()
    done.set()

    assert errors == []
    calls = [c for k in range(n_threads) for c in results[k]]
    assert len(calls) == 2000
    for k in range(n_threads):
        versions = [v for _, _, v, _ in results[k]]
        flips = sum(1 for a, b in itertools.pairwise(versions) if a != b)
        assert flips == 1 and versions[0] == "1" and versions[-1] == "2", f"thread {k}"
    # Calls that began after the swap returned got version 2; calls over before it began, 1.
    assert all(v == "2" for t0, _, v, _ in calls if t0 > swap_end)
    assert all(v == "1" for _, t1, v, _ in calls if t1 < swap_start)
    # Nobody waited for the swap: the slowest call is far below the swap's own duration.
    assert swap_end - swap_start >= SLOW_SWAP
    slowest = max(t1 - t0 for t0, t1, _, _ in calls)
    assert slowest < SLOW_SWAP / 2, f"a call took {slowest:.3f} s"
    during = [v for t0, t1, v, _ in calls if swap_start < t0 and t1 < swap_end]
    assert len(during) > 100 and set(during) <= {"1", "2"}  # served all along
    t = runtime.telemetry()
    assert t["model_version"] == "2" and t["errors_total"] == 0 and t["calls"] == 2000
    assert t["swap"]["swaps"] == 1 and t["swap"]["last_swap"]["to"] == "2"

    # Every record reached the collector once, under the version that made it.
    runtime.close()
    served = {rid: v for k in range(n_threads) for _, _, v, rid in results[k]}
    assert wait_for(lambda: len(registry.state.records) >= 2000)
    shipped = {r["request_id"]: version for version, r in registry.state.records}
    assert shipped == served
    updater.close()


def test_a_tampered_artifact_is_refused_and_the_old_model_keeps_serving(
    demo: Any,
    card: ModelCard,
    rows: list[dict[str, Any]],
    registry: RegistryServer,
    tmp_path: Path,
) -> None:
    factory = VersionedMonitors(
        registry.url, TOKEN, MODEL, spool_root=False, heartbeat_interval=None
    )
    runtime = EdgeRuntime(demo.model, monitor=factory)
    updater = ModelUpdater(runtime, registry.url, TOKEN, interval=60)
    genuine = Path(demo.model_int8).read_bytes()
    tampered = bytearray(genuine)
    tampered[len(tampered) // 2] ^= 0x01
    registry.state.publish(MODEL, "2", genuine, v2_card(card), served=bytes(tampered))

    assert updater.poll_once() == "refused"
    assert runtime.model_version == "1"
    assert runtime.predict(rows[0]).model_version == "1"
    error = runtime.telemetry()["swap"]["last_error"]
    assert error["code"] == "sha256_mismatch" and error["version"] == "2"
    # Not fetched again on every poll while the assignment stays the same.
    assert updater.poll_once() == "unchanged"
    assert registry.state.count("artifact") == 1

    # The heartbeat carries the refusal to the collector.
    mon = Monitor(
        registry.url,
        TOKEN,
        MODEL,
        "1",
        spool_dir=False,
        heartbeat_interval=None,
        telemetry=runtime.telemetry,
    )
    mon.heartbeat()
    assert wait_for(lambda: registry.state.heartbeats)
    beat = registry.state.heartbeats[0]["runtime"]
    assert beat["swap"]["last_error"]["code"] == "sha256_mismatch"
    mon.close(1.0)

    # A fixed artifact under a new version is taken.
    registry.state.publish(MODEL, "3", genuine, card.with_version("3").to_dict())
    assert updater.poll_once() == "swapped"
    assert runtime.predict(rows[0]).model_version == "3"
    runtime.close()


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("garbage bytes", "invalid_model"),
        ("card for other columns", "card_mismatch"),
        ("card for another model", "card_mismatch"),
        ("invalid card", "card_mismatch"),
        ("size differs", "size_mismatch"),
    ],
)
def test_broken_rollouts_are_refused(
    case: str,
    code: str,
    demo: Any,
    card: ModelCard,
    rows: list[dict[str, Any]],
    registry: RegistryServer,
) -> None:
    runtime = EdgeRuntime(demo.model)
    updater = ModelUpdater(runtime, registry.url, TOKEN, interval=60)
    artifact = Path(demo.model_int8).read_bytes()
    new_card = v2_card(card)
    served = None
    if case == "garbage bytes":
        artifact = b"\x08\x07" + b"not a model" * 100
    elif case == "card for other columns":
        new_card["features"][0]["categories"].pop()
        new_card["input"]["columns"].pop()
    elif case == "card for another model":
        new_card["name"] = "other-model"
    elif case == "invalid card":
        new_card["threshold"] = 7
    elif case == "size differs":
        served = artifact + b"\x00"
    registry.state.publish(MODEL, "2", artifact, new_card, served=served)

    assert updater.poll_once() == "refused"
    t = runtime.telemetry()
    assert t["swap"]["last_error"]["code"] == code
    assert t["swap"]["failures"] == 1 and t["swap"]["swaps"] == 0
    assert t["model_version"] == "1"
    assert runtime.predict(rows[0]).model_version == "1"


def test_the_assigned_version_wins_over_the_cards(
    demo: Any, card: ModelCard, registry: RegistryServer, rows: list[dict[str, Any]]
) -> None:
    runtime = EdgeRuntime(demo.model)
    updater = ModelUpdater(runtime, registry.url, TOKEN, interval=60)
    registry.state.publish(MODEL, "5", Path(demo.model_int8).read_bytes(), card.to_dict())
    assert updater.poll_once() == "swapped"
    assert runtime.model_version == "5" and runtime.card.version == "5"
    assert runtime.predict(rows[0]).model_version == "5"


def test_the_poll_protocol(
    demo: Any, card: ModelCard, registry: RegistryServer, rows: list[dict[str, Any]]
) -> None:
    runtime = EdgeRuntime(demo.model)
    updater = ModelUpdater(runtime, registry.url + "/", TOKEN, interval=60)
    assert updater.poll_once() == "no_assignment"

    # The assignment names what is already served: nothing is downloaded.
    fp32 = Path(demo.model).read_bytes()
    registry.state.publish(MODEL, "1", fp32, card.to_dict())
    assert updater.poll_once() == "current"
    assert updater.poll_once() == "unchanged"
    hits = [h for h in registry.state.hits if h.path.endswith("assignment")]
    assert "if-none-match" not in hits[1].headers
    assert hits[2].headers["if-none-match"].startswith('"') and hits[2].status == 304
    assert all(h.headers["authorization"] == f"Bearer {TOKEN}" for h in hits)
    assert registry.state.count("artifact") == 0

    # A transient artifact failure is retried at the next poll, not remembered.
    registry.state.publish(MODEL, "2", Path(demo.model_int8).read_bytes(), None)
    registry.state.artifact_failures.append(503)
    assert updater.poll_once() == "error"
    assert runtime.telemetry()["swap"]["last_error"]["code"] == "download_failed"
    # Without a card in the assignment the current card carries over to the new version.
    assert updater.poll_once() == "swapped"
    assert runtime.model_version == "2" and runtime.card.version == "2"
    assert runtime.card.features == card.features
    status = runtime.telemetry()["swap"]
    assert status["last_poll"]["outcome"] == "swapped" and status["poll_errors"] == 1


def test_poll_errors_are_reported_not_raised(
    demo: Any, registry: RegistryServer, dead_url: str
) -> None:
    runtime = EdgeRuntime(demo.model)
    assert ModelUpdater(runtime, dead_url, TOKEN, timeout=2).poll_once() == "error"
    assert ModelUpdater(runtime, registry.url, "emn_wrong").poll_once() == "error"
    status = runtime.telemetry()["swap"]
    assert status["poll_errors"] == 2 and "401" in status["last_poll"]["error"]
    with pytest.raises(ValueError, match="URL"):
        ModelUpdater(runtime, "ftp://x", TOKEN)
    with pytest.raises(ValueError, match="token"):
        ModelUpdater(runtime, registry.url, "a\nb")


def test_the_background_poller_swaps_by_itself(
    demo: Any, card: ModelCard, registry: RegistryServer
) -> None:
    runtime = EdgeRuntime(demo.model)
    registry.state.publish(MODEL, "2", Path(demo.model_int8).read_bytes(), v2_card(card))
    updater = ModelUpdater(runtime, registry.url, TOKEN, interval=0.05).start()
    try:
        assert wait_for(lambda: runtime.model_version == "2")
        # The version flips inside the swap, before the poll's outcome is recorded.
        assert wait_for(lambda: (runtime.status.last_poll or {}).get("outcome") == "unchanged")
    finally:
        updater.close()
    assert runtime.telemetry()["swap"]["swaps"] == 1


def test_old_version_records_left_in_a_spool_are_sent_under_their_version(
    demo: Any, registry: RegistryServer, dead_url: str, tmp_path: Path, rows: list[Any]
) -> None:
    root = tmp_path / "spool"
    options = {"flush_interval": 0.05, "spool_flush_interval": 0.05, "heartbeat_interval": None}
    # A previous run logged version 1 while the collector was down, then stopped.
    offline = VersionedMonitors(dead_url, TOKEN, MODEL, spool_root=root, **options)
    runtime = EdgeRuntime(demo.model, monitor=offline)
    for i in range(20):
        runtime.predict(rows[i], request_id=f"old-{i}")
    runtime.close(timeout=0.5)
    assert (root / "1" / "model_version").read_text() == "1"

    # This run serves version 2: the first Monitor it makes drains version 1's spool.
    online = VersionedMonitors(registry.url, TOKEN, MODEL, spool_root=root, **options)
    monitor = online("2", lambda: {})
    assert online.drain_thread is not None
    online.drain_thread.join(15)
    monitor.close(1.0)
    assert sorted(r["request_id"] for _, r in registry.state.records) == sorted(
        f"old-{i}" for i in range(20)
    )
    assert {v for v, _ in registry.state.records} == {"1"}
