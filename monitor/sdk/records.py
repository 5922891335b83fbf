"""Building wire records and labels from what the host application passes to ``log()``.

Validation is deliberately cheap type checking (no JSON encoding on the caller's thread): it
accepts exactly what ``monitor.wire``'s rules allow, the rules the collector validates with, so
the worker's later encoding cannot fail and the collector accepts every value sent. A value the
rules refuse raises InvalidValue, which ``log()`` counts as ``invalid``.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from monitor.wire import (
    MAX_CLASSES,
    MAX_FEATURES,
    MAX_ID_CHARS,
    MAX_RUNTIME_DEPTH,
    MAX_RUNTIME_STRING_CHARS,
    MAX_SAFE_INTEGER,
    name_ok,
    number_ok,
    runtime_problem,
    text_ok,
)

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
    """``value`` if it is a usable id: a ``str`` of 1..MAX_ID_CHARS characters of text
    (``wire.name_ok``)."""
    if type(value) is not str and not isinstance(value, str):
        raise InvalidValue(f"{what} must be a str, got {type(value).__name__}")
    value = str(value)
    if not name_ok(value):
        raise InvalidValue(f"{what} must have 1..{MAX_ID_CHARS} characters, no NUL or surrogate")
    return value


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


def _text(value: str, what: str) -> str:
    if not text_ok(value):
        raise InvalidValue(f"{what} must not hold NUL or surrogate characters")
    return value


def _integer(value: int, what: str) -> int:
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise InvalidValue(f"{what}: integers must be within +-2**53 (send larger ids as str)")
    return value


def feature_value(value: object) -> Any:
    """A feature value on the wire: number, string, boolean or null.

    NaN and infinities become null: JSON has no spelling for them, and in a feature vector they
    mean "missing", which the data-quality checks should see rather than lose the record.
    Strings must be text and integers within +-2**53 (``wire``'s rules).
    """
    v: Any = value
    t = type(v)
    if t is not str and t is not int and t is not float and t is not bool and v is not None:
        v = _slow_scalar(v)
        t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is str:
        return _text(v, "feature value")
    if t is int:
        return _integer(v, "feature value")
    return v


def finite_number(value: object, what: str) -> float | int:
    """A finite float, or an int within +-2**53 (NaN/inf/non-numbers are invalid)."""
    v: Any = value
    t = type(v)
    if t is not int and t is not float:
        v = _slow_scalar(v)
        t = type(v)
        if t is not int and t is not float:
            raise InvalidValue(f"{what} must be a number")
    if t is float:
        if not math.isfinite(v):
            raise InvalidValue(f"{what} must be finite")
        return float(v)
    return _integer(v, what)


def prediction_value(value: object) -> Any:
    """A prediction (or a label) on the wire: a finite number, text or a boolean."""
    v: Any = value
    t = type(v)
    if v is None:
        raise InvalidValue("prediction must not be None")
    if t is not str and t is not int and t is not float and t is not bool:
        v = _slow_scalar(v)
        t = type(v)
    if t is str:
        if v.isascii() and "\x00" not in v:  # the common case, inline
            return v
        return _text(v, "prediction")
    if t is bool:
        return v
    return finite_number(v, "prediction")


#: Feature names already found good (str of 1..MAX_ID_CHARS characters of text): a model logs
#: the same names on every call, so each is checked once, not once per call. Bounded: cleared
#: when full, for callers whose names keep changing.
_good_names: set[str] = set()
_GOOD_NAMES_MAX = 4096
_MAX_INT = MAX_SAFE_INTEGER
_MIN_INT = -MAX_SAFE_INTEGER


def _feature_name(key: object) -> str:
    if type(key) is not str:
        if not isinstance(key, str):
            raise InvalidValue("feature names must be str")
        key = str(key)
    return _learn_name(key, "feature names")


def _learn_name(name: str, what: str) -> str:
    if not name_ok(name):
        raise InvalidValue(f"{what} must have 1..{MAX_ID_CHARS} characters of text")
    if len(_good_names) >= _GOOD_NAMES_MAX:
        _good_names.clear()
    _good_names.add(name)
    return name


def features_value(features: object) -> dict[str, Any]:
    """A copy of ``features`` with plain values, so later mutation by the caller is harmless."""
    if type(features) is not dict and not isinstance(features, Mapping):
        raise InvalidValue(f"features must be a dict, got {type(features).__name__}")
    if len(features) > MAX_FEATURES:
        raise InvalidValue(f"more than {MAX_FEATURES} features")
    out = dict(features)
    # Fast pass: known names and plain values that need no conversion (the common case).
    known = _good_names
    for key, value in out.items():
        if key not in known:
            break
        t = type(value)
        if t is float:
            if value - value != 0.0:  # NaN or infinity
                break
        elif t is str:
            if not value.isascii() or "\x00" in value:  # non-ASCII text: the careful check
                break
        elif t is int:
            if not _MIN_INT <= value <= _MAX_INT:
                break
        elif not (t is bool or value is None):
            break
    else:
        return out
    clean: dict[str, Any] = {}
    for key, value in out.items():
        clean[key if key in known else _feature_name(key)] = feature_value(value)
    return clean


def probabilities_value(probabilities: object) -> dict[str, float] | list[float] | None:
    """None, an object of class -> probability, or a list of probabilities: at most
    MAX_CLASSES, each a finite number in [0, 1] once rounded to PROBABILITY_DECIMALS; class
    names are names (``wire.name_ok``; int class indices become their decimal names)."""
    if probabilities is None:
        return None
    if type(probabilities) is dict or isinstance(probabilities, Mapping):
        if len(probabilities) > MAX_CLASSES:
            raise InvalidValue(f"more than {MAX_CLASSES} classes")
        out: dict[str, float] = {}
        known = _good_names  # class names follow the rule of feature names
        for key, value in probabilities.items():
            name = key if key in known else _class_name(key)
            if type(value) is float and 0.0 <= value <= 1.0:  # the common case, inline
                out[name] = round(value, PROBABILITY_DECIMALS)
            else:
                out[name] = _probability(value)
        return out
    tolist = getattr(probabilities, "tolist", None)  # numpy arrays, without importing numpy
    if callable(tolist) and not isinstance(probabilities, (list, tuple)):
        probabilities = tolist()
    if isinstance(probabilities, (list, tuple)):
        if len(probabilities) > MAX_CLASSES:
            raise InvalidValue(f"more than {MAX_CLASSES} classes")
        return [
            round(v, PROBABILITY_DECIMALS)
            if type(v) is float and 0.0 <= v <= 1.0
            else _probability(v)
            for v in probabilities
        ]
    raise InvalidValue("probabilities must be a dict, a list or None")


def _class_name(key: object) -> str:
    if isinstance(key, str):
        return _learn_name(str(key), "probability class names")
    if isinstance(key, Integral) and not isinstance(key, bool):
        return str(int(key))  # class indices: JSON object keys are strings anyway
    raise InvalidValue("probability class names must be str or int")


def _probability(value: object) -> float:
    p = round(finite_number(value, "probability"), PROBABILITY_DECIMALS)
    if not 0.0 <= p <= 1.0:
        raise InvalidValue("probabilities must be between 0 and 1")
    return p


def check_ts(ts: float | int, what: str = "ts") -> None:
    """InvalidValue unless ``ts`` is a number that travels (``wire.number_ok``).

    Any such time is sent, also one from a clock that was never set (1970) or runs ahead: the
    collector stores that record at the time it arrives and marks the node's clock as skewed,
    so a wrong clock costs no data (``monitor.wire``, Times)."""
    if not number_ok(ts):
        raise InvalidValue(f"{what} must be a finite number of seconds since the epoch")


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
    if type(ts) is not float or ts - ts != 0.0:  # the common case, a finite float, inline
        check_ts(ts)
    # "id" then "ts" first: the spool finds "ts" by scanning for its key (see spool.py), and no
    # user-chosen key may come before it.
    record: dict[str, Any] = {"id": record_id, "ts": ts}
    if request_id != record_id:
        # Inline when plain ASCII of the right length (the common case); else the full rule.
        if (
            type(request_id) is not str
            or not 0 < len(request_id) <= MAX_ID_CHARS
            or not request_id.isascii()
            or "\x00" in request_id
        ):
            request_id = check_id(request_id, "request_id")
        record["request_id"] = request_id
    record["features"] = features_value(features)
    record["prediction"] = prediction_value(prediction)
    record["probabilities"] = probabilities_value(probabilities)
    if latency_ms is None:
        record["latency_ms"] = None
    else:
        latency = round(finite_number(latency_ms, "latency_ms"), LATENCY_DECIMALS)
        if latency < 0:
            raise InvalidValue("latency_ms must not be negative")
        record["latency_ms"] = latency
    return record


def build_label(request_id: str, label: object, ts: float) -> dict[str, Any]:
    """One wire label ``{"request_id", "label", "ts"}``; ``label`` follows the prediction's
    rules and ``ts`` the record's (any finite time: see ``check_ts``)."""
    check_ts(ts)
    return {
        "request_id": check_id(request_id, "request_id"),
        "label": prediction_value(label),
        "ts": ts,
    }


def heartbeat_runtime(runtime: object) -> dict[str, Any]:
    """The runtime telemetry to send in a heartbeat, fitted to ``wire.runtime_problem``'s bounds.

    Strings longer than MAX_RUNTIME_STRING_CHARS are cut (an error message's start says what
    went wrong) and non-finite floats become null; anything else out of bounds (too deep, too
    many entries, too large, not JSON) raises InvalidValue, and the heartbeat goes without it.
    """
    fitted = _fit(runtime, 1)
    if type(fitted) is not dict:
        raise InvalidValue("runtime telemetry must be a dict")
    problem = runtime_problem(fitted)
    if problem is not None:
        where = f"runtime.{problem.field}" if problem.field else "runtime"
        raise InvalidValue(f"{where} {problem.message}")
    return fitted


def _fit(value: object, depth: int) -> Any:
    if isinstance(value, str):
        text = str(value)
        if len(text) > MAX_RUNTIME_STRING_CHARS:
            text = text[: MAX_RUNTIME_STRING_CHARS - 3] + "..."
        return text
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return int(value)
    if depth > MAX_RUNTIME_DEPTH:
        raise InvalidValue(f"runtime telemetry nests deeper than {MAX_RUNTIME_DEPTH} levels")
    if isinstance(value, Mapping):
        return {_fit_key(k): _fit(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fit(v, depth + 1) for v in value]
    raise InvalidValue(f"runtime telemetry holds a {type(value).__name__}")


def _fit_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidValue("runtime telemetry keys must be str")
    return str(key)
