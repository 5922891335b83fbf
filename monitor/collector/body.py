"""Reading request bodies within limits: size on the wire, gzip decoded in bounded memory, JSON."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.requests import Request

from monitor import wire
from monitor.errors import BadRequest, PayloadTooLarge, ValidationFailed


async def read_body(request: Request, *, max_wire_bytes: int) -> tuple[bytes, str]:
    """The body as sent and its Content-Encoding, refused early when it is too large."""
    declared = request.headers.get("content-length")
    # isascii: str.isdigit() also holds for digits int() refuses, such as "²".
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_wire_bytes
    ):
        raise _too_large("body", max_wire_bytes)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise BadRequest(
            f"unsupported Content-Encoding {encoding!r}; use gzip or none",
            code="unsupported_encoding",
            details=[{"field": "Content-Encoding", "message": "must be gzip or absent"}],
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_wire_bytes:
            raise _too_large("body", max_wire_bytes)
        chunks.append(chunk)
    return b"".join(chunks), encoding


def decode_json(raw: bytes, encoding: str, *, max_decoded_bytes: int) -> Any:
    """Decompress (in bounded memory) and parse a body read by ``read_body``."""
    if encoding == "gzip":
        raw = gunzip(raw, max_decoded_bytes)
    elif len(raw) > max_decoded_bytes:
        raise _too_large("decoded body", max_decoded_bytes)
    return parse_json(raw)


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress one gzip member, stopping as soon as the output passes ``limit`` bytes."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _bad_gzip(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise _too_large("decoded body", limit)
    if not decompressor.eof:
        raise _bad_gzip("gzip body is truncated")
    return out


def _bad_gzip(message: str) -> BadRequest:
    return BadRequest(
        message,
        code="bad_gzip",
        details=[{"code": "bad_gzip", "field": "body", "message": message}],
    )


def parse_json(raw: bytes) -> Any:
    """Parse a body as strict JSON into values every later step can hold, or refuse it whole.

    400 for what the parser refuses: not JSON at all (``malformed_json``), NaN or Infinity or a
    number beyond float64's range (``invalid_number``: not JSON, and our SDK never writes them),
    invalid UTF-8 or a lone surrogate (``invalid_string``), nesting deeper than
    ``wire.MAX_JSON_DEPTH`` (``too_deep``). 422 ``invalid_string``, with the field path, for a
    string (or key) holding NUL. So what comes back holds finite numbers only, integers within
    64 bits, and strings that pass ``wire.text_ok``.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _unreadable(raw, exc) from None
    # JSON can spell NUL only as the escape \u0000 (a raw control character is malformed), so
    # a scan of the bytes in C clears nearly every body (a body without any backslash, the
    # common case, in one memchr); only a hit looks for the string that holds it.
    if b"\\" in raw and b"\\u0000" in raw:
        path = _path_of_nul(body)
        if path is _TOO_LONG_TO_WALK:
            path = "body" if _NUL_ESCAPE.search(raw) else None
        if path is not None:
            raise ValidationFailed(
                f"{path or 'body'} holds a NUL character",
                code="invalid_string",
                details=[
                    {
                        "code": "invalid_string",
                        "field": path or "body",
                        "message": "strings must not hold NUL (\\u0000)",
                    }
                ],
            )
    return body


#: ``\u0000`` after an even run of backslashes (none, or escaped ones): an escaped NUL. The
#: look-behind starts matches only where a run starts, so a scan is linear in the body's size.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*+\\u0000")
#: Most values the search for the path of a NUL visits; a larger body is judged by its bytes.
_MAX_VISITS = 100_000
_TOO_LONG_TO_WALK = "\x00too long to walk"


def _unreadable(raw: bytes, exc: orjson.JSONDecodeError) -> BadRequest:
    message = str(exc.msg)
    at = raw[exc.pos : exc.pos + 8]
    if "depth" in message or "recursion" in message:
        code = "too_deep"
        message = f"nested deeper than {wire.MAX_JSON_DEPTH} levels"
    elif "infinity" in message or at.startswith((b"NaN", b"Infinity")):
        code = "invalid_number"
        message = "numbers must be finite and within float64's range (no NaN or Infinity)"
    elif "surrogate" in message or "UTF-8" in message:
        code = "invalid_string"
    else:
        code = "malformed_json"
    return BadRequest(
        f"body is not valid JSON: {message} (at byte {exc.pos})",
        code=code,
        details=[{"code": code, "field": "body", "message": message}],
    )


def _path_of_nul(body: Any) -> str | None:
    """The field path of the first string or key holding NUL, None when there is none (the
    scan's false alarm: an escaped backslash followed by ``u0000``), or _TOO_LONG_TO_WALK after
    _MAX_VISITS values.

    Depth first in document order, with a stack of iterators rather than recursion (bodies nest
    up to 1,024 deep); each level keeps a link to its parent, so only the culprit's path is
    spelled out."""
    if type(body) is str:
        return "" if "\x00" in body else None
    if type(body) is not list and type(body) is not dict:
        return None
    stack: list[tuple[Iterator[tuple[Any, Any]], Any]] = [(_members(body), None)]
    visits = 0
    while stack:
        members, link = stack[-1]
        for key, value in members:
            visits += 1
            if visits > _MAX_VISITS:
                return _TOO_LONG_TO_WALK
            if type(key) is str and "\x00" in key:
                return _spell((link, key))
            kind = type(value)
            if kind is str:
                if "\x00" in value:
                    return _spell((link, key))
            elif kind is list or kind is dict:
                stack.append((_members(value), (link, key)))
                break  # into the child; this level's iterator resumes after it
        else:
            stack.pop()
    return None


def _members(value: list[Any] | dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    return iter(value.items()) if type(value) is dict else enumerate(value)


def _spell(link: Any) -> str:
    parts: list[str] = []
    while link is not None:
        link, key = link
        if type(key) is int:
            parts.append(f"[{key}]")
        else:
            shown = key.replace("\x00", "\\u0000")
            parts.append("." + (shown if len(shown) <= 64 else shown[:61] + "..."))
    return "".join(reversed(parts)).lstrip(".")


def _too_large(what: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} is larger than {limit} bytes",
        details=[{"field": "body", "message": f"at most {limit} bytes"}],
    )
