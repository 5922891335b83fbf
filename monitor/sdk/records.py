"""Building wire records and labels from what the host application passes to ``log()``.

Validation is deliberately cheap type checking (no JSON encoding on the caller's thread): it
accepts exactly what ``monitor.wire`` allows, so the worker's later encoding cannot fail.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from monitor.wire import MAX_FEATURES, MAX_ID_CHARS

#: Decimals kept of what the SDK measures or is handed as metadata: ``ts`` (seconds, so
#: milliseconds), ``latency_ms`` (so nanoseconds) and class probabilities. Full float precision
#: is ~7 incompressible digits per value on the wire, and monitoring needs none of them.
TS_DECIMALS = 3
LATENCY_DECIMALS = 3
PROBABILITY_DECIMALS = 6


class InvalidValue(ValueError):
    """A value the SDK cannot put on the wire; the record is counted as ``invalid``."""


# Ids are UUIDv7 (RFC 9562) as 32 lowercase hex digits: a 48-bit Unix millisecond timestamp,
# then 74 random bits. Time-ordered ids keep the collector's unique indexes appending at their
# right edge instead of inserting at random places (random UUID4s made ingest fall ~3.5x as
# the database grew); within one millisecond the 74 random bits keep ids unique. The random
# bits come from a private Mersenne Twister seeded from os.urandom (half the cost of a
# getrandom() call per id), reseeded in a forked child so that parent and child never share a
# sequence. Ids need to be unique, not secret.
_rng = random.Random(os.urandom(32))
_getrandbits = _rng.getrandbits
_time_ns = time.time_ns
_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1
# Version 7 in bits 76-79, and the RFC 9562 variant (binary 10) in the top bits of the last 64.
_VERSION_VARIANT = (7 << 76) | (1 << 63)


def _reseed() -> None:
    _rng.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reseed)


def now_ms() -> int:
    """Milliseconds since the Unix epoch (what an id and a default ``ts`` are made of)."""
    return _time_ns() // 1_000_000


def new_id(ms: int | None = None) -> str:
    """A UUIDv7 as 32 hex digits: ``ms`` (default: now) in the first 12, then random bits."""
    if ms is None:
        ms = _time_ns() // 1_000_000
    r = _getrandbits(74)
    # 48 bits of ms | version | 12 random bits | variant | 62 random bits, formatted once.
    return f"{(ms & _MS_MASK) << 80 | (r >> 62) << 64 | (r & _RAND_B_MASK) | _VERSION_VARIANT:032x}"


def check_id(value: object, what: str) -> str:
    """``value`` if it is a usable id (non-empty ``str`` of at most MAX_ID_CHARS)."""
    if type(value) is not str and not isinstance(value, str):
        raise InvalidValue(f"{what} must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_CHARS:
        raise InvalidValue(f"{what} must have 1..{MAX_ID_CHARS} characters")
    return str(value)


def _slow_scalar(value: object) -> Any:
    """Coerce numpy-style scalars (and str/int/float subclasses) to plain JSON scalars."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    item = getattr(value, "item", None)  # numpy scalars and 0-d arrays (np.bool_ is not a Number)
    if callable(item):
        plain = item()
        if type(plain) in (bool, int, float, str):
            return plain
    raise InvalidValue(f"unsupported value of type {type(value).__name__}")


def feature_value(value: object) -> Any:
    """A feature value on the wire: number, string, boolean or null.

    NaN and infinities become null: JSON has no spelling for them, and in a feature vector they
    mean "missing", which the data-quality checks should see rather than lose the record.
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is not float:
        value = _slow_scalar(value)
        if type(value) is not float:
            return value
    return value if math.isfinite(value) else None  # type: ignore[arg-type]


def finite_number(value: object, what: str) -> float | int:
    """A finite int or float (NaN/inf/non-numbers are invalid)."""
    t = type(value)
    if t is not int and t is not float:
        value = _slow_scalar(value)
        t = type(value)
        if t is not int and t is not float:
            raise InvalidValue(f"{what} must be a number")
    if t is float and not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidValue(f"{what} must be finite")
    return value  # type: ignore[return-value]


def prediction_value(value: object) -> Any:
    """A prediction on the wire: a finite number, a string or a boolean."""
    t = type(value)
    if t is str or t is int or t is bool:
        return value
    if value is None:
        raise InvalidValue("prediction must not be None")
    if t is not float:
        value = _slow_scalar(value)
        if type(value) is not float:
            return value
    if not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidValue("prediction must be finite")
    return value


def features_value(features: object) -> dict[str, Any]:
    """A copy of ``features`` with plain values, so later mutation by the caller is harmless."""
    if type(features) is not dict and not isinstance(features, Mapping):
        raise InvalidValue(f"features must be a dict, got {type(features).__name__}")
    if len(features) > MAX_FEATURES:
        raise InvalidValue(f"more than {MAX_FEATURES} features")
    out = dict(features)
    # Fast pass: plain str keys and plain finite values need no conversion (the common case).
    for key, value in out.items():
        t = type(value)
        if t is float:
            if value - value != 0.0:  # NaN or infinity
                break
        elif not (t is str or t is int or t is bool or value is None):
            break
        if type(key) is not str:
            break
    else:
        return out
    clean: dict[str, Any] = {}
    for key, value in out.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise InvalidValue("feature names must be str")
            key = str(key)
        clean[key] = feature_value(value)
    return clean


def probabilities_value(probabilities: object) -> dict[str, float] | list[float] | None:
    """None, an object of class -> probability, or a list of probabilities (all finite)."""
    if probabilities is None:
        return None
    if type(probabilities) is dict or isinstance(probabilities, Mapping):
        out: dict[str, float] = {}
        for key, value in probabilities.items():
            if isinstance(key, str):
                name = str(key)
            elif isinstance(key, Integral) and not isinstance(key, bool):
                name = str(int(key))  # class indices: JSON object keys are strings anyway
            else:
                raise InvalidValue("probability class names must be str or int")
            out[name] = round(finite_number(value, "probability"), PROBABILITY_DECIMALS)
        return out
    tolist = getattr(probabilities, "tolist", None)  # numpy arrays, without importing numpy
    if callable(tolist) and not isinstance(probabilities, (list, tuple)):
        probabilities = tolist()
    if isinstance(probabilities, (list, tuple)):
        return [round(finite_number(v, "probability"), PROBABILITY_DECIMALS) for v in probabilities]
    raise InvalidValue("probabilities must be a dict, a list or None")


def build_record(
    record_id: str,
    request_id: str,
    ts: float,
    features: object,
    prediction: object,
    probabilities: object,
    latency_ms: object,
) -> dict[str, Any]:
    """One wire record (see ``monitor.wire``); raises InvalidValue for anything unencodable.

    ``ts`` is sent as given (``log()`` rounds it); ``latency_ms`` is rounded to
    LATENCY_DECIMALS and probabilities to PROBABILITY_DECIMALS; features are never rounded.
    ``request_id`` is left out when it equals ``record_id``: the collector then takes the
    record id as the request id, and the record carries one random id instead of two.
    """
    # "id" then "ts" first: the spool finds "ts" by scanning for its key (see spool.py), and no
    # user-chosen key may come before it.
    record: dict[str, Any] = {"id": record_id, "ts": ts}
    if request_id != record_id:
        record["request_id"] = request_id
    record["features"] = features_value(features)
    record["prediction"] = prediction_value(prediction)
    record["probabilities"] = probabilities_value(probabilities)
    record["latency_ms"] = (
        None
        if latency_ms is None
        else round(finite_number(latency_ms, "latency_ms"), LATENCY_DECIMALS)
    )
    return record


def build_label(request_id: str, label: object, ts: float) -> dict[str, Any]:
    """One wire label ``{"request_id", "label", "ts"}``."""
    return {"request_id": request_id, "label": prediction_value(label), "ts": ts}
