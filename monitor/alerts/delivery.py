"""Send one signed webhook message and say how it went (delivered, retry, gone or failed)."""

from __future__ import annotations

import email.utils
import functools
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from monitor.alerts import signing
from monitor.alerts.targets import Target

log = logging.getLogger(__name__)

RETRY_AFTER_CAP_SECONDS = 24 * 3600.0
USER_AGENT = "edge-monitor-webhooks/1"
# Enough of an answer to show in the delivery log; the rest is not read.
MAX_ANSWER_BYTES = 64 * 1024
ERROR_CHARS = 1000

DELIVERED = "delivered"
RETRY = "retry"
GONE = "gone"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """How one attempt went.

    ``result``: ``delivered`` (2xx), ``retry`` (any other answer, or none: try again later),
    ``gone`` (410: the receiver asks us to stop; the endpoint is disabled) or ``failed`` (this
    message can never be sent as it is). ``retry_after_seconds`` is the receiver's Retry-After,
    capped at 24 h.
    """

    result: str
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_after_seconds: float | None = None

    @property
    def delivered(self) -> bool:
        """Whether the receiver took it (2xx)."""
        return self.result == DELIVERED


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the trust store costs ~0.1 s; once per process is enough.
    return ssl.create_default_context()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta seconds or an HTTP date), capped at 24 h."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    seconds: float
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)


def _pinned(target: Target, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The URL to connect to ``address`` itself, with the Host header and TLS name of the host.

    Connecting to the address that was checked (not to a second lookup of the name) closes the
    DNS-rebinding gap between the check and the connection.
    """
    url = httpx.URL(target.url)
    pinned = url.copy_with(host=address.split("%", 1)[0])
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return pinned, {"host": host_header}, extensions


def send(
    target: Target,
    *,
    secret: str,
    message_id: str,
    body: bytes,
    timeout: float,
    timestamp: int | None = None,
    transport: httpx.BaseTransport | None = None,
    tls: ssl.SSLContext | None = None,
) -> Outcome:
    """POST ``body`` signed with ``secret`` to the checked ``target``; never raises.

    Redirects are not followed (a 3xx is a failure: the receiver must give its final URL).
    ``timeout`` bounds the whole attempt: connecting, sending and reading the answer. HTTPS
    certificates are checked against the system's trust store (``tls`` replaces it) for the
    URL's host name, although the connection goes to the checked address.
    """
    started = time.monotonic()
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = signing.headers(secret, message_id, stamp, body)
    headers["user-agent"] = USER_AGENT
    last_error = "no address to connect to"
    with httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        transport=transport,
        verify=tls or _tls(),
        trust_env=False,
    ) as client:
        for address in target.addresses:
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                last_error = f"timed out after {timeout:g} s"
                break
            url, host_header, extensions = _pinned(target, address)
            request = client.build_request(
                "POST",
                url,
                content=body,
                headers={**headers, **host_header},
                extensions={**extensions, "timeout": httpx.Timeout(remaining).as_dict()},
            )
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:
                # Another address of the same host may answer; each was checked.
                last_error = f"cannot connect to {address}: {exc}"
                continue
            except httpx.TimeoutException:
                last_error = f"timed out after {timeout:g} s"
                break
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                break
            try:
                return _judge(response, started, timeout)
            finally:
                response.close()
    return Outcome(RETRY, None, last_error[:ERROR_CHARS], _ms(started))


def _judge(response: httpx.Response, started: float, timeout: float) -> Outcome:
    """The outcome of an answer, reading at most MAX_ANSWER_BYTES of it within the deadline."""
    status = response.status_code
    text = b""
    try:
        for chunk in response.iter_bytes():
            text += chunk
            if len(text) >= MAX_ANSWER_BYTES or time.monotonic() - started > timeout:
                break
    except httpx.HTTPError:
        pass  # the status line is what counts; a broken body does not undo it
    snippet = text[:300].decode("utf-8", "replace").strip()
    if 200 <= status < 300:
        return Outcome(DELIVERED, status, None, _ms(started))
    if status == 410:
        return Outcome(GONE, status, _error(status, snippet), _ms(started))
    if 300 <= status < 400:
        where = response.headers.get("location")
        error = f"HTTP {status}: redirects are not followed" + (f" (to {where})" if where else "")
        return Outcome(RETRY, status, error[:ERROR_CHARS], _ms(started))
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return Outcome(RETRY, status, _error(status, snippet), _ms(started), retry_after)


def _error(status: int, snippet: str) -> str:
    return (f"HTTP {status}" + (f": {snippet}" if snippet else ""))[:ERROR_CHARS]


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)
