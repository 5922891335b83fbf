"""Reading request bodies within limits: size on the wire, gzip decoded in bounded memory, JSON."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import orjson
from starlette.requests import Request

from monitor.errors import BadRequest, PayloadTooLarge


async def read_json(request: Request, *, max_wire_bytes: int, max_decoded_bytes: int) -> Any:
    """The request's JSON body, refusing oversized bodies before and while reading them."""
    raw, encoding = await read_body(request, max_wire_bytes=max_wire_bytes)
    return decode_json(raw, encoding, max_decoded_bytes=max_decoded_bytes)


async def read_body(request: Request, *, max_wire_bytes: int) -> tuple[bytes, str]:
    """The body as sent and its Content-Encoding, refused early when it is too large."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_wire_bytes:
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
        raise BadRequest(f"body is not valid gzip: {exc}", code="bad_gzip") from exc
    if len(out) > limit:
        raise _too_large("decoded body", limit)
    if not decompressor.eof:
        raise BadRequest("gzip body is truncated", code="bad_gzip")
    return out


def parse_json(raw: bytes) -> Any:
    """Parse JSON; NaN, Infinity and numbers too large for a double (which Python's json module
    writes or reads) become null, so no non-finite number reaches the records."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        return json.loads(raw, parse_constant=lambda _name: None, parse_float=_finite_or_none)
    except (ValueError, UnicodeDecodeError):
        pass
    raise BadRequest(f"body is not valid JSON: {error}", code="malformed_json")


def _finite_or_none(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def _too_large(what: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{what} is larger than {limit} bytes",
        details=[{"field": "body", "message": f"at most {limit} bytes"}],
    )
