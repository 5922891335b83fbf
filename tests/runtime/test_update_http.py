"""The updater's HTTP manners: Retry-After holds its loop back, redirects are never followed."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor import wire
from monitor.runtime import EdgeRuntime, ModelUpdater

from .registry import TOKEN, RegistryServer
from .test_updates import MODEL, v2_card, wait_for

#: (status, headers) or (status, headers, JSON body) for one GET, given its path.
Answer = Callable[[str], tuple[Any, ...]]
ERROR_BODY = {"error": {"code": "scripted", "message": "scripted"}}


class Stub:
    """A loopback HTTP server answering GETs as ``answer`` says and recording every hit."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.hits: list[tuple[str, dict[str, str]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                stub.hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, *rest = stub.answer(self.path)
                body = json.dumps(rest[0] if rest else ERROR_BODY).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def stubs() -> Iterator[Callable[[Answer], Stub]]:
    made: list[Stub] = []

    def make(answer: Answer) -> Stub:
        made.append(Stub(answer))
        return made[-1]

    yield make
    for stub in made:
        stub.close()


def test_retry_after_holds_the_poll_loop_back(demo: Any, stubs: Callable[[Answer], Stub]) -> None:
    answers = {"status": 503, "headers": {}}
    stub = stubs(lambda path: (answers["status"], answers["headers"]))
    runtime = EdgeRuntime(demo.model)
    updater = ModelUpdater(runtime, stub.url, TOKEN, interval=0.02)
    updater.start()
    try:
        # Without a Retry-After a 503 is retried at the next poll, every interval.
        assert wait_for(lambda: len(stub.hits) >= 3)
        assert updater.deferred_for() == 0.0
        answers.update(status=429, headers={"Retry-After": "120"})
        seen = len(stub.hits)
        assert wait_for(lambda: updater.deferred_for() > 0.0)
        asked = len(stub.hits)
        assert asked <= seen + 2  # the 429 came at most one poll after the switch
        assert 100 < updater.deferred_for() <= 120
        time.sleep(0.3)  # fifteen intervals: a loop ignoring Retry-After would poll again
        assert len(stub.hits) == asked
    finally:
        updater.close()
    status = runtime.telemetry()["swap"]
    assert status["last_poll"]["outcome"] == "error" and "429" in status["last_poll"]["error"]


def test_an_http_date_retry_after_on_503_defers_too(
    demo: Any, stubs: Callable[[Answer], Stub]
) -> None:
    from email.utils import formatdate

    later = formatdate(time.time() + 90, usegmt=True)
    stub = stubs(lambda path: (503, {"Retry-After": later}))
    updater = ModelUpdater(EdgeRuntime(demo.model), stub.url, TOKEN, interval=60)
    assert updater.poll_once() == "error"
    assert 60 < updater.deferred_for() <= 91


def test_a_redirected_assignment_is_not_followed(
    demo: Any, stubs: Callable[[Answer], Stub]
) -> None:
    elsewhere = stubs(lambda path: (200, {}))
    target = elsewhere.url + wire.assignment_path(MODEL)
    stub = stubs(lambda path: (302, {"Location": target}))
    runtime = EdgeRuntime(demo.model)
    updater = ModelUpdater(runtime, stub.url, TOKEN, interval=60)
    assert updater.poll_once() == "error"
    assert "302" in runtime.telemetry()["swap"]["last_poll"]["error"]
    assert len(stub.hits) == 1 and stub.hits[0][1]["authorization"] == f"Bearer {TOKEN}"
    assert elsewhere.hits == []  # the token never went to the other host


def test_a_redirected_artifact_is_not_followed(
    demo: Any, card: Any, stubs: Callable[[Answer], Stub]
) -> None:
    elsewhere = stubs(lambda path: (200, {}))
    artifact = Path(demo.model_int8).read_bytes()
    assignment = {
        "model": MODEL,
        "version": "2",
        "sha256": hashlib.sha256(artifact).hexdigest(),
        "size": len(artifact),
        "artifact_url": wire.artifact_path(MODEL, "2"),
        "card": v2_card(card),
    }

    def answer(path: str) -> tuple[Any, ...]:
        if path == wire.assignment_path(MODEL):
            return 200, {"ETag": '"a1"'}, assignment
        return 307, {"Location": elsewhere.url + path}

    stub = stubs(answer)
    runtime = EdgeRuntime(demo.model)
    updater = ModelUpdater(runtime, stub.url, TOKEN, interval=60)
    assert updater.poll_once() == "refused"
    assert runtime.model_version == "1"
    error = runtime.telemetry()["swap"]["last_error"]
    assert error["code"] == "download_failed" and "307" in error["message"]
    assert [path for path, _ in stub.hits] == [
        wire.assignment_path(MODEL),
        wire.artifact_path(MODEL, "2"),
    ]
    assert elsewhere.hits == []


def test_an_artifact_longer_than_its_declared_size_is_refused_unread(
    demo: Any, card: Any, registry: RegistryServer
) -> None:
    runtime = EdgeRuntime(demo.model)
    artifact = Path(demo.model_int8).read_bytes()
    registry.state.publish(MODEL, "2", artifact, v2_card(card), served=artifact + b"\x00" * 4096)
    updater = ModelUpdater(runtime, registry.url, TOKEN, interval=60)
    assert updater.poll_once() == "refused"
    error = runtime.telemetry()["swap"]["last_error"]
    assert error["code"] == "size_mismatch" and "more than" in error["message"]
    assert updater.poll_once() == "unchanged"  # remembered: not downloaded again
    assert registry.state.count("artifact") == 1
