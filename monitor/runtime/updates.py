"""Poll the collector for this node's assigned model version and hot-swap the runtime to it.

Every ``interval`` seconds (+-10% jitter, so a fleet does not poll in step) the updater sends
``GET {url}/v1/models/{model}/assignment`` with the node token and ``If-None-Match`` (see
``monitor.wire``). When the assignment names other bytes than the runtime serves (another
version, or the same version with another sha256), it downloads
``GET {url}/v1/models/{model}/versions/{version}/artifact``, checks its size and sha256,
and calls ``EdgeRuntime.swap`` (which loads, checks the card against the graph, warms up and
swaps atomically; the old model serves until then and on any failure).

Choices:

* The card is the assignment's ``card``; without one, the current card is reused for the new
  version (a retrained model with the same inputs), and the runtime checks it fits the graph.
  The card must name this model; the assigned version wins over the card's ``version`` (the
  registry may file a card under another number), and is what the records are logged as.
* The artifact is fetched from ``artifact_url`` when it is a path (joined to ``url``, so a path
  prefix is kept), else from ``wire.artifact_path``; an absolute URL is refused, so the node
  token is never sent to another host. Redirects are not followed, for the same reason.
* Refused artifacts (size or sha256 mismatch, invalid ONNX, card mismatch) are remembered by
  ``(version, sha256)`` and not downloaded again for ``retry_refused_after`` seconds, so a bad
  rollout costs one download per node, not one per poll. Network errors and 5xx are retried
  at the next poll. Every failure is in ``runtime.telemetry()["swap"]``, so the heartbeat
  carries it to the collector.
* A ``Retry-After`` on a 429, 503 or other retryable answer is honoured: the background loop
  does not poll again before it (capped at an hour, like the SDK's sender); an explicit
  ``poll_once()`` is the caller's call and goes out regardless.
* Bodies are bounded: the assignment (it carries the card) at ``MAX_ASSIGNMENT_BYTES``, the
  artifact at the size the assignment declares, so a wrong or hostile answer cannot fill the
  node's memory.

HTTP goes through the SDK's ``Transport`` (standard library only, so the runtime stays
installable with ``edge-monitor[runtime]`` alone): one keep-alive connection, the request
timeout, the same TLS ``ssl_context`` handling, and redirects never followed (the
connection is kept for the requests of one poll and closed after it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import ssl
import threading
import time
from typing import Any

from monitor import wire
from monitor.card import CardError, ModelCard
from monitor.runtime.runtime import EdgeRuntime, ModelError
from monitor.sdk.transport import TRANSPORT_ERRORS, Response, Transport

logger = logging.getLogger(__name__)

USER_AGENT = "edge-monitor-runtime/1"
MiB = 1024 * 1024
#: Largest assignment body read (it carries the card).
MAX_ASSIGNMENT_BYTES = 4 * MiB
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class _Transient(Exception):
    """A failure worth retrying at the next poll (network, 5xx)."""


class ModelUpdater:
    """Keeps an ``EdgeRuntime`` on the model version the collector assigns to this node.

    Args:
        runtime: the runtime to swap; its card's name is the model polled for.
        url: the collector's base URL (a path prefix is kept).
        token: this node's token, sent as ``Authorization: Bearer``.
        interval: seconds between polls.
        timeout: seconds for each HTTP request.
        max_artifact_bytes: larger artifacts are refused before download.
        retry_refused_after: seconds before a refused artifact is tried again.
        ssl_context: for ``https`` URLs (default: system CAs).
    """

    def __init__(
        self,
        runtime: EdgeRuntime,
        url: str,
        token: str,
        *,
        interval: float = 30.0,
        timeout: float = 10.0,
        max_artifact_bytes: int = 512 * MiB,
        retry_refused_after: float = 600.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(token, str) or any(c in token for c in "\r\n\x00"):
            raise ValueError("token must be a str without line breaks")
        if not interval > 0 or not timeout > 0:
            raise ValueError("interval and timeout must be positive")
        try:
            # gzip_level=0: the updater only GETs, and sends no body to compress.
            self._transport = Transport(
                url,
                token,
                timeout=float(timeout),
                gzip_level=0,
                ssl_context=ssl_context,
                user_agent=USER_AGENT,
            )
        except ValueError as exc:
            raise ValueError(
                f"collector URL must be http(s)://host[:port][/prefix], got {url!r}"
            ) from exc
        self.runtime = runtime
        self.model = runtime.model_name
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.max_artifact_bytes = max_artifact_bytes
        self.retry_refused_after = retry_refused_after
        self._etag: str | None = None
        self._not_before = 0.0  # monotonic time before which the loop must not poll
        self._poll_lock = threading.Lock()  # one poll at a time: the Transport is not shared
        self._refused: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    # -- the loop ------------------------------------------------------------------------------

    def start(self) -> ModelUpdater:
        """Poll now and then every ``interval`` seconds in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="edge-runtime-updater", daemon=True
            )
            self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop polling (a swap in progress finishes first, within ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._transport.abort()

    def deferred_for(self) -> float:
        """Seconds the collector's last ``Retry-After`` still forbids polling (0 if none)."""
        return max(0.0, self._not_before - time.monotonic())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # the loop must survive anything; poll_once reports its own
                logger.exception("edge-monitor runtime: model update poll failed")
            self._stop.wait(max(self.interval * random.uniform(0.9, 1.1), self.deferred_for()))

    # -- one poll ------------------------------------------------------------------------------

    def poll_once(self) -> str:
        """Poll once and act; returns the outcome.

        Outcomes: ``unchanged`` (304), ``current`` (the assignment is what is served),
        ``swapped``, ``refused`` (a broken artifact; the old model serves), ``skipped`` (a
        recently refused artifact), ``no_assignment`` (404), ``error`` (network, auth, 5xx,
        malformed answer).
        """
        with self._poll_lock:
            try:
                return self._poll()
            finally:
                # Keep-alive serves the assignment and artifact requests of one poll; between
                # polls a collector (uvicorn: after 5 s) closes an idle connection anyway, and
                # an updater dropped without close() must not leave a socket open.
                self._transport.close()

    def _poll(self) -> str:
        status = self.runtime.status
        headers = {"Accept": "application/json"}
        if self._etag is not None:
            headers["If-None-Match"] = self._etag
        try:
            answer = self._get(wire.assignment_path(self.model), headers, MAX_ASSIGNMENT_BYTES)
        except _Transient as exc:
            return self._poll_error(f"assignment request failed: {exc}")
        code, body = answer.status, answer.body
        if code == 304:
            status.polled("unchanged", self.runtime.model_version)
            return "unchanged"
        if code == 404:
            status.polled("no_assignment")
            return "no_assignment"
        if code != 200:
            return self._poll_error(f"assignment answered HTTP {code}: {_error_text(body)}")
        if answer.truncated:
            return self._poll_error(f"malformed assignment: over {MAX_ASSIGNMENT_BYTES} bytes")
        try:
            assignment = self._parse_assignment(body)
        except ValueError as exc:
            return self._poll_error(f"malformed assignment: {exc}")
        version, sha256 = assignment["version"], assignment["sha256"]
        etag = answer.headers.get("etag")
        if version == self.runtime.model_version and sha256 == self.runtime.sha256:
            self._etag = etag
            status.polled("current", version)
            return "current"
        refused_at = self._refused.get((version, sha256))
        if refused_at is not None and time.monotonic() - refused_at < self.retry_refused_after:
            self._etag = etag
            status.polled("skipped", version)
            return "skipped"
        try:
            data = self._download(assignment)
            card = self._card(assignment)
        except _Transient as exc:
            # Not remembered and no ETag kept: the next poll tries again.
            status.failed("download_failed", str(exc), version)
            return self._poll_error(f"artifact download failed: {exc}", version)
        except ModelError as exc:
            status.failed(exc.code, exc.message, version)
            logger.error(
                "edge-monitor runtime: refused %s %s (%s): %s",
                self.model,
                version,
                exc.code,
                exc.message,
            )
            return self._refuse(exc, version, sha256, etag)
        try:
            self.runtime.swap(data, card)
        except ModelError as exc:  # recorded in the status, and logged, by swap() itself
            return self._refuse(exc, version, sha256, etag)
        self._etag = etag
        self._refused.pop((version, sha256), None)
        status.polled("swapped", version)
        return "swapped"

    def _refuse(self, exc: ModelError, version: str, sha256: str, etag: str | None) -> str:
        self._refused[(version, sha256)] = time.monotonic()
        self._etag = etag
        self.runtime.status.polled("refused", version, error=exc.code)
        return "refused"

    def _poll_error(self, message: str, version: str | None = None) -> str:
        self.runtime.status.polled("error", version, error=message)
        key = message.split(":")[0]
        if key not in self._warned:  # one warning per kind: a dead collector must not flood
            self._warned.add(key)
            logger.warning("edge-monitor runtime: %s", message)
        return "error"

    def _parse_assignment(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if data.get("model") != self.model:
            raise ValueError(f"model is {data.get('model')!r}, expected {self.model!r}")
        version = data.get("version")
        if not isinstance(version, str) or not 0 < len(version) <= wire.MAX_ID_CHARS:
            raise ValueError("version must be a non-empty string")
        sha256 = data.get("sha256")
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256.lower()):
            raise ValueError("sha256 must be 64 hex digits")
        size = data.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError("size must be a positive integer")
        card = data.get("card")
        if card is not None and not isinstance(card, dict):
            raise ValueError("card must be an object or null")
        url = data.get("artifact_url")
        if url is not None and not isinstance(url, str):
            raise ValueError("artifact_url must be a string")
        return {**data, "sha256": sha256.lower()}

    def _download(self, assignment: dict[str, Any]) -> bytes:
        version, size = assignment["version"], assignment["size"]
        if size > self.max_artifact_bytes:
            raise ModelError(
                "size_mismatch", f"artifact of {size} bytes exceeds {self.max_artifact_bytes}"
            )
        path = assignment.get("artifact_url") or wire.artifact_path(self.model, version)
        if not path.startswith("/"):
            raise ModelError(
                "download_failed", f"artifact_url {path!r} is not a path on the collector"
            )
        answer = self._get(path, {"Accept": "application/octet-stream"}, size)
        code, data = answer.status, answer.body
        if code != 200:  # 5xx and the retryable statuses were raised as _Transient
            raise ModelError(
                "download_failed", f"artifact answered HTTP {code}: {_error_text(data)}"
            )
        if answer.truncated:
            raise ModelError(
                "size_mismatch", f"artifact has more than the {size} bytes the assignment says"
            )
        if len(data) != size:
            raise ModelError(
                "size_mismatch", f"artifact has {len(data)} bytes, the assignment says {size}"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != assignment["sha256"]:
            raise ModelError(
                "sha256_mismatch",
                f"artifact sha256 is {digest}, the assignment says {assignment['sha256']}",
            )
        return data

    def _card(self, assignment: dict[str, Any]) -> ModelCard:
        version = assignment["version"]
        raw = assignment.get("card")
        if raw is None:
            return self.runtime.card.with_version(version)
        try:
            card = ModelCard.from_dict(raw)
        except CardError as exc:
            raise ModelError("card_mismatch", f"invalid card: {exc}") from exc
        if card.version != version:
            # The registry's version is the truth the records are filed under; a card file
            # registered under another number (e.g. `models register --version 5`) still fits.
            logger.info(
                "edge-monitor runtime: card of %s says version %r; serving it as %r",
                self.model,
                card.version,
                version,
            )
            card = card.with_version(version)
        return card

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, path: str, headers: dict[str, str], limit: int) -> Response:
        """The answer, its body read up to ``limit`` bytes; _Transient on I/O, 5xx and the
        retryable statuses (whose ``Retry-After`` defers the next poll of the loop)."""
        try:
            answer = self._transport.get(path, headers=headers, max_bytes=limit)
        except TRANSPORT_ERRORS as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if answer.status >= 500 or answer.status in wire.RETRYABLE_STATUSES:
            wait = answer.retry_after()
            if wait is not None:
                self._not_before = max(self._not_before, time.monotonic() + wait)
            raise _Transient(f"HTTP {answer.status}: {_error_text(answer.body)}")
        return answer


def _error_text(body: bytes) -> str:
    """The error envelope's message, or the start of the body."""
    try:
        error = json.loads(body)["error"]
        return f"{error['code']}: {error['message']}"
    except Exception:
        return body[:200].decode("utf-8", "replace")
