"""Pressure on the collector: strangers are refused before their bodies are read, bodies are
parsed off the event loop, and the memory of bodies in progress stays within a budget."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.collector.budget import BodyBudget, decoded_size_hint
from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from tests.collector import rawhttp
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth, batch, record
from tests.collector.served import ServedCollector

MiB = 1024 * 1024
NODE_PATHS = [wire.HEARTBEATS_PATH, wire.LABELS_PATH, wire.RECORDS_PATH]


def add_node(engine: Engine, name: str) -> str:
    """Another node's token, registered for the test model (which ``token`` registered)."""
    with begin_write(engine) as conn:
        node, node_token = nodes.add_node(conn, name, group_name="line-b", site="plant-1")
        nodes.grant_model(conn, node.id, models.get_model(conn, MODEL).id)
    return node_token


def nan_body(size: int) -> bytes:
    """A JSON body of about ``size`` bytes full of NaN: the slowest kind to parse."""
    return b'{"ts": 1, "sdk": {"values": [' + b",".join([b"NaN"] * (size // 4)) + b"]}}"


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not in /metrics"
    return float(found.group(1))


def wait_for(condition: Any, what: str, deadline: float = 30.0) -> None:
    """Poll until ``condition()`` holds; the deadline only bounds a test that would hang."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.02)


# --- strangers are refused before their body is read ---------------------------------------


@pytest.mark.parametrize("path", NODE_PATHS)
def test_a_stranger_is_refused_before_sending_its_body(
    collector: BackgroundCollector, token: str, path: str
) -> None:
    # The body is announced at 1 MB but only its first bytes are ever sent: an answer can only
    # come from a server that decided without reading (let alone parsing) the body.
    with rawhttp.connect(collector.url) as sock:
        sock.sendall(rawhttp.head(path, {**auth("ema_not-a-token"), "Content-Length": "1000000"}))
        sock.sendall(b"{ this is not JSON")
        answer = rawhttp.read_answer(sock)

    assert answer.status == 401
    assert answer.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize("token", ["", "ema_not-the-admin-token"])
def test_a_stranger_to_the_admin_api_is_refused_before_sending_its_body(
    collector: BackgroundCollector, token: str
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": "200000000"}
    if token:
        headers.update(auth(token))
    with rawhttp.connect(collector.url) as sock:
        sock.sendall(rawhttp.head("/v1/admin/nodes", headers) + b'{"name": "')
        answer = rawhttp.read_answer(sock)

    assert answer.status == 401


@pytest.mark.parametrize("path", NODE_PATHS)
def test_an_invalid_body_from_a_stranger_is_answered_401_not_400(
    http: httpx.Client, token: str, path: str
) -> None:
    answer = http.post(path, content=nan_body(20_000) + b"{{{", headers=auth("ema_wrong"))

    assert answer.status_code == 401


def test_healthz_keeps_answering_while_strangers_and_nodes_send_nan_bodies(
    collector: BackgroundCollector, token: str
) -> None:
    stop = threading.Event()
    answers: list[tuple[str, int]] = []

    def send(path: str, who: str) -> None:
        with httpx.Client(base_url=collector.url, timeout=30) as client:
            while not stop.is_set():
                response = client.post(path, content=nan_body(20_000), headers=auth(who))
                answers.append((who, response.status_code))

    senders = [
        threading.Thread(target=send, args=(path, who))
        for path in (wire.HEARTBEATS_PATH, wire.LABELS_PATH)
        for who in ("ema_stranger", token)
    ]
    for sender in senders:
        sender.start()
    try:
        wait_for(lambda: len(answers) >= 4, "the senders got answers")
        progress = []
        with httpx.Client(base_url=collector.url, timeout=30) as client:
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
                progress.append(len(answers))
    finally:
        stop.set()
        for sender in senders:
            sender.join()

    # The senders kept going while /healthz answered, so it was answered among them.
    assert progress[-1] > progress[0]
    assert {status for who, status in answers if who == "ema_stranger"} == {401}
    assert all(status < 500 for who, status in answers if who == token)


# --- the body budget ---------------------------------------------------------------------------


def test_large_bodies_leave_the_last_eighth_of_the_budget_to_small_ones() -> None:
    budget = BodyBudget(64 * MiB)
    large = 20 * MiB

    assert budget.try_resize(0, large)
    assert budget.try_resize(0, large)
    assert not budget.try_resize(0, large)  # 60 MiB would pass the 56 MiB for large bodies
    assert budget.try_resize(0, budget.small)  # ... which small bodies may still use
    assert budget.in_use == 2 * large + budget.small

    budget.release(large)
    assert budget.try_resize(0, large)


def test_a_share_may_always_shrink_and_grows_only_if_it_fits() -> None:
    budget = BodyBudget(64 * MiB)
    assert budget.try_resize(0, 50 * MiB)

    assert not budget.try_resize(50 * MiB, 60 * MiB)
    assert budget.in_use == 50 * MiB
    assert budget.try_resize(50 * MiB, 10 * MiB)
    assert budget.in_use == 10 * MiB


def test_the_decoded_size_of_a_gzip_body_is_read_from_its_trailer() -> None:
    text = b'{"records": []}' * 1000

    assert decoded_size_hint(gzip.compress(text), "gzip") == len(text)
    assert decoded_size_hint(text, "identity") == len(text)
    assert decoded_size_hint(b"\x1f\x8b", "gzip") == 0


def test_a_gzip_body_larger_than_its_trailer_says_is_refused_as_corrupt(
    http: httpx.Client, token: str
) -> None:
    packed = gzip.compress(json.dumps(batch([record() for _ in range(50)])).encode())
    forged = packed[:-4] + (100).to_bytes(4, "little")  # claims to decode to 100 bytes

    answer = http.post(
        wire.RECORDS_PATH, content=forged, headers={**auth(token), "Content-Encoding": "gzip"}
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_gzip"


@pytest.fixture
def tight_collector(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[BackgroundCollector]:
    """A collector whose budget holds eleven 1 MiB bodies on the wire, and no more."""
    settings = Settings(
        database_url=db_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        max_wire_bytes=MiB,
        max_decoded_bytes=MiB,
        body_memory_bytes=13 * MiB,
    )
    with BackgroundCollector(settings) as running:
        yield running


def test_a_body_that_does_not_fit_is_answered_busy_at_once_and_small_ones_still_pass(
    tight_collector: BackgroundCollector, token: str, engine: Engine
) -> None:
    url = tight_collector.url
    announced = {**auth(token), "Content-Length": str(MiB)}
    holders = []
    try:
        # Eleven bodies announced at 1 MiB, never finished, hold 11 of the 11.375 MiB that
        # large bodies may use.
        for _ in range(11):
            sock = rawhttp.connect(url)
            sock.sendall(rawhttp.head(wire.RECORDS_PATH, announced) + b"{")
            holders.append(sock)
        wait_for(
            lambda: metric(url, "edge_monitor_body_bytes_in_use") == 11 * MiB,
            "the eleven bodies hold their share",
        )

        with rawhttp.connect(url) as sock:
            sock.sendall(rawhttp.head(wire.RECORDS_PATH, announced))
            refused = rawhttp.read_answer(sock)  # before a byte of the body was sent

        other = add_node(engine, "node-2")
        small = httpx.post(
            url + wire.RECORDS_PATH, json=batch([record() for _ in range(5)]), headers=auth(other)
        )
    finally:
        for sock in holders:
            sock.close()

    assert refused.status == 503
    assert refused.json()["error"]["code"] == "busy"
    assert int(refused.headers["retry-after"]) >= 1
    assert small.status_code == 200
    # The holders went away mid-body: their shares are given back.
    wait_for(lambda: metric(url, "edge_monitor_body_bytes_in_use") == 0, "shares given back")


def _large_body(records: int = 10_000, features: int = 62) -> bytes:
    """A records body of about 13 MB of JSON that gzips to about 0.3 MB."""
    values = {f"sensor_{i:02d}": 1000.5 + i for i in range(features)}
    now = time.time()
    rows = [
        {
            "id": uuid.uuid4().hex,
            "ts": now - 60 + i / 1000,
            "features": values,
            "prediction": "ok",
            "probabilities": {"ok": 0.9, "fail": 0.1},
            "latency_ms": 1.25,
        }
        for i in range(records)
    ]
    return gzip.compress(orjson.dumps(batch(rows)), compresslevel=6)


def test_16_bodies_of_13_mb_at_once_grow_rss_256_mib_at_most_and_a_healthy_node_is_served(
    engine: Engine, db_url: str, token: str, tmp_path: Path
) -> None:
    bodies = [_large_body() for _ in range(16)]
    assert len(gzip.decompress(bodies[0])) > 13_000_000
    healthy = add_node(engine, "node-2")
    gzipped = {**auth(token), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    big_answers: list[httpx.Response] = []
    small_answers: list[int] = []

    with ServedCollector(db_url, tmp_path / "collector.log") as served:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            for _ in range(3):  # warm: imports, caches, pools
                client.post(wire.RECORDS_PATH, json=batch([record()]), headers=auth(healthy))
        before = served.memory_kib()["VmRSS"]

        def send_large(body: bytes) -> None:
            with httpx.Client(base_url=served.url, timeout=120) as client:
                big_answers.append(client.post(wire.RECORDS_PATH, content=body, headers=gzipped))

        burst = [threading.Thread(target=send_large, args=(body,)) for body in bodies]
        for thread in burst:
            thread.start()
        with httpx.Client(base_url=served.url, timeout=60) as client:
            while any(thread.is_alive() for thread in burst) or not small_answers:
                answer = client.post(
                    wire.RECORDS_PATH,
                    json=batch([record() for _ in range(20)]),
                    headers=auth(healthy),
                )
                small_answers.append(answer.status_code)
                time.sleep(0.02)  # a healthy node's pace, well within the default rate limit
        for thread in burst:
            thread.join()
        peak = served.memory_kib()["VmHWM"]

    growth_mib = (peak - before) / 1024
    assert growth_mib <= 256, f"RSS grew by {growth_mib:.0f} MiB"
    assert small_answers and set(small_answers) == {200}
    statuses = sorted(answer.status_code for answer in big_answers)
    assert len(statuses) == 16 and set(statuses) <= {200, 503}
    assert 200 in statuses  # large bodies are processed, a few at a time
    for answer in big_answers:
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "busy"
            assert "retry-after" in answer.headers
