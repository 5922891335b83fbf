"""A stdlib stand-in for the collector's rollout endpoints, exactly as ``monitor.wire`` says.

``GET /v1/models/{model}/assignment`` answers the published assignment with an ``ETag`` (304
for a matching ``If-None-Match``, 404 ``no_assignment`` when nothing is published), ``GET
/v1/models/{model}/versions/{version}/artifact`` the bytes. Records and heartbeats are
accepted and kept, so a real SDK Monitor can talk to it too. Every request needs the node
token.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from monitor import wire

TOKEN = "emn_test-node"
_ASSIGNMENT = re.compile(r"^/v1/models/([^/]+)/assignment$")
_ARTIFACT = re.compile(r"^/v1/models/([^/]+)/versions/([^/]+)/artifact$")


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class Registry:
    """State of the fake collector; mutate it through ``publish`` and the fields."""

    assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[tuple[str, str], bytes] = field(default_factory=dict)
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (version, record)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    #: Status to answer artifact requests with instead of the bytes (e.g. 503), once each.
    artifact_failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(
        self,
        model: str,
        version: str,
        artifact: bytes,
        card: dict[str, Any] | None,
        *,
        served: bytes | None = None,
        reason: str = "production",
    ) -> dict[str, Any]:
        """Assign ``version``; ``served`` (if given) is what the artifact URL really returns."""
        assignment = {
            "model": model,
            "version": version,
            "sha256": hashlib.sha256(artifact).hexdigest(),
            "size": len(artifact),
            "reason": reason,
            "artifact_url": wire.artifact_path(model, version),
            "card": card,
        }
        with self.lock:
            self.assignments[model] = assignment
            self.artifacts[(model, version)] = artifact if served is None else served
        return assignment

    def count(self, kind: str) -> int:
        """Requests answered for ``assignment`` or ``artifact`` paths."""
        with self.lock:
            return sum(1 for h in self.hits if h.path.endswith(kind))


def etag_of(assignment: dict[str, Any]) -> str:
    canonical = json.dumps(assignment, sort_keys=True, separators=(",", ":")).encode()
    return '"' + hashlib.sha256(canonical).hexdigest()[:32] + '"'


class _Handler(BaseHTTPRequestHandler):
    server: RegistryServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _hit(self) -> Hit:
        hit = Hit(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        with self.server.state.lock:
            self.server.state.hits.append(hit)
        return hit

    def _answer(self, hit: Hit, status: int, body: Any = None, headers: dict | None = None) -> None:
        hit.status = status
        if isinstance(body, bytes):
            data, kind = body, "application/octet-stream"
        elif body is None:
            data, kind = b"", "application/json"
        else:
            data, kind = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if status != 304 and status != 204:
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status not in (204, 304):
            self.wfile.write(data)

    def _authorized(self, hit: Hit) -> bool:
        if hit.headers.get("authorization") == f"Bearer {TOKEN}":
            return True
        self._answer(hit, 401, {"error": {"code": "unauthorized", "message": "bad token"}})
        return False

    def do_GET(self) -> None:
        hit = self._hit()
        if not self._authorized(hit):
            return
        state = self.server.state
        if m := _ASSIGNMENT.match(self.path):
            with state.lock:
                assignment = state.assignments.get(m.group(1))
            if assignment is None:
                self._answer(
                    hit, 404, {"error": {"code": "no_assignment", "message": "nothing deployed"}}
                )
                return
            etag = etag_of(assignment)
            if hit.headers.get("if-none-match") == etag:
                self._answer(hit, 304, headers={"ETag": etag})
            else:
                self._answer(hit, 200, assignment, headers={"ETag": etag})
        elif m := _ARTIFACT.match(self.path):
            with state.lock:
                data = state.artifacts.get((m.group(1), m.group(2)))
                failure = state.artifact_failures.pop(0) if state.artifact_failures else None
            if failure is not None:
                self._answer(hit, failure, {"error": {"code": "unavailable", "message": "try"}})
            elif data is None:
                self._answer(hit, 404, {"error": {"code": "not_found", "message": "no such"}})
            else:
                self._answer(hit, 200, data)
        else:
            self._answer(hit, 404, {"error": {"code": "not_found", "message": self.path}})

    def do_POST(self) -> None:
        hit = self._hit()
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self._authorized(hit):
            return
        if hit.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        body = json.loads(raw)
        state = self.server.state
        if self.path == wire.RECORDS_PATH:
            with state.lock:
                state.records += [(body["model_version"], r) for r in body["records"]]
            self._answer(
                hit, 200, {"accepted": len(body["records"]), "duplicate": 0, "rejected": []}
            )
        elif self.path == wire.HEARTBEATS_PATH:
            with state.lock:
                state.heartbeats.append(body)
            self._answer(hit, 204)
        elif self.path == wire.LABELS_PATH:
            self._answer(hit, 200, {"accepted": len(body["labels"])})
        else:
            self._answer(hit, 404, {"error": {"code": "not_found", "message": self.path}})


class RegistryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.state = Registry()
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
