"""Request features -> the model's float32 columns, as the card says; input errors and warnings.

What is an error and what is only a warning (a monitoring product serves what it can and
counts the rest, so that data quality shows up in the telemetry instead of in failed calls):

* Errors (``InvalidInput``, the call fails): the features are not an object
  (``not_an_object``), a card feature is absent (``missing_feature``), a feature is not in
  the card (``unknown_feature``), a value has the wrong type (``invalid_type``: numeric
  features take int/float, never bool or str; categorical ones take str), or a value is
  unusable (``invalid_value``): a number that is infinite or too large for the model's
  float32 input (beyond ``FLOAT32_MAX`` it would reach the model as infinity and come out as
  NaN probabilities), null for a numeric feature without a ``fill``, or a value the wire
  cannot carry (the features are logged as they came, so ``monitor.wire``'s rules apply: an
  integer beyond +-2**53, a string with a NUL or a surrogate code point; the SDK would drop
  the record of a prediction that was served).
* Warnings (served, reported on the prediction and counted per feature): a numeric value
  outside the card's range (``out_of_range``; the raw value is used, not clipped, because
  that is what the model would see in the field), null or NaN (``missing_value``; numeric:
  the card's fill value, categorical: all one-hot columns zero), a category the card does not
  list (``unknown_category``; all zeros).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from monitor.card import ModelCard
from monitor.wire import MAX_ID_CHARS, MAX_SAFE_INTEGER, name_ok, text_ok

#: Codes of input errors (the call fails).
ERROR_CODES = (
    "not_an_object",
    "missing_feature",
    "unknown_feature",
    "invalid_type",
    "invalid_value",
)
#: Codes of input warnings (the call is served).
WARNING_CODES = ("out_of_range", "missing_value", "unknown_category")

#: Most problems listed for one request (the rest are counted in one last issue).
MAX_ISSUES = 50

#: The largest magnitude a float32 holds; a larger number would reach the model as infinity.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with one field: ``field`` is a path such as ``features.rpm``."""

    field: str
    code: str
    message: str
    feature: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class InvalidInput(ValueError):
    """The features cannot be served; ``issues`` names every offending field."""

    code = "validation_failed"

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(f"{i.field}: {i.message}" for i in self.issues))

    @property
    def kind(self) -> str:
        """The first issue's code: what the call is counted as."""
        return self.issues[0].code if self.issues else "invalid_input"


class _Reject(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Preprocessor:
    """The card's preprocessing, compiled into lookup tables for the per-call loop."""

    def __init__(self, card: ModelCard) -> None:
        index = {column: i for i, column in enumerate(card.columns)}
        self.width = len(card.columns)
        self.names = card.feature_names
        self._names = frozenset(self.names)
        self._n = len(self.names)
        numeric = []
        categorical = []
        for f in card.features:
            if f.type == "numeric":
                low, high = f.range if f.range is not None else (-math.inf, math.inf)
                # Clamped, so that the fast path's range tests also keep out float32 overflow
                # and the integers the wire refuses.
                low, high = max(low, -FLOAT32_MAX), min(high, FLOAT32_MAX)
                int_low, int_high = max(low, -MAX_SAFE_INTEGER), min(high, MAX_SAFE_INTEGER)
                numeric.append((f.name, index[f.name], low, high, int_low, int_high, f.fill))
            else:
                slots = {c: index[f"{f.name}={c}"] for c in f.categories}
                categorical.append((f.name, slots))
        self._numeric = tuple(numeric)
        self._categorical = tuple(categorical)
        # One C-level lookup of every numeric value (KeyError if one is absent); itemgetter
        # of a single name returns the value itself, hence the wrapper.
        names = [n for n, *_ in numeric]
        if len(names) == 1:
            only = names[0]
            self._numeric_values: Any = lambda f: (f[only],)
        else:
            self._numeric_values = operator.itemgetter(*names) if names else lambda f: ()

    # -- one row -----------------------------------------------------------------------------

    def row(
        self, features: Any, prefix: str = "features"
    ) -> tuple[list[float], list[Issue] | None]:
        """The row's column values and its warnings (None when clean); InvalidInput if bad."""
        # The common case (a plain dict with exactly the card's features, in-range numbers,
        # known categories) takes only the first branch of each test below.
        if type(features) is not dict:
            if not isinstance(features, Mapping):
                raise self._invalid(features, prefix)
            features = dict(features)
        if len(features) != self._n:
            raise self._invalid(features, prefix)
        x = [0.0] * self.width
        warnings: list[Issue] | None = None
        try:
            values = self._numeric_values(features)  # as long as _numeric, by construction
            for (name, i, low, high, int_low, int_high, fill), v in zip(
                self._numeric, values, strict=False
            ):
                t = type(v)
                if (t is float and low <= v <= high) or (t is int and int_low <= v <= int_high):
                    x[i] = v
                    continue
                value, code = _numeric(v, low, high, fill)
                x[i] = value
                if code is not None:
                    warnings = warnings or []
                    warnings.append(_warning(prefix, name, code, v, low, high))
            for name, slots in self._categorical:
                v = features[name]
                if type(v) is str:
                    j = slots.get(v)
                    if j is not None:
                        x[j] = 1.0
                        continue
                    code = "unknown_category"
                elif v is None:
                    code = "missing_value"
                else:
                    raise _Reject("invalid_type", "")
                if code == "unknown_category" and not text_ok(v):
                    raise _Reject("invalid_value", "")
                warnings = warnings or []
                warnings.append(_warning(prefix, name, code, v, categorical=True))
        except (KeyError, _Reject):
            raise self._invalid(features, prefix) from None
        return x, warnings

    def matrix(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows -> the float32 ``[N, C]`` tensor (InvalidInput names ``rows[i].feature``)."""
        out = []
        for i, features in enumerate(rows):
            x, _ = self.row(features, f"rows[{i}]")
            out.append(x)
        return np.array(out, dtype=np.float32).reshape(len(out), self.width)

    # -- the slow path: every problem, with its field ------------------------------------------

    def check(self, features: Any, prefix: str = "features") -> list[Issue]:
        """Every error in ``features`` (empty if none), the first MAX_ISSUES of them listed."""
        if not isinstance(features, Mapping):
            return [
                Issue(
                    prefix,
                    "not_an_object",
                    f"must be an object of feature values, got {_type_name(features)}",
                )
            ]
        issues = []
        for name in self.names:
            if name not in features:
                issues.append(
                    Issue(f"{prefix}.{name}", "missing_feature", "required", feature=name)
                )
        for name in features:
            if name not in self._names:
                shown = name if isinstance(name, str) else repr(name)
                issues.append(
                    Issue(
                        f"{prefix}.{shown}",
                        "unknown_feature",
                        "not a feature of this model",
                        feature=shown,
                    )
                )
        for name, _, low, high, _, _, fill in self._numeric:
            if name in features:
                try:
                    _numeric(features[name], low, high, fill)
                except _Reject as exc:
                    issues.append(Issue(f"{prefix}.{name}", exc.code, exc.message, name))
        for name, _ in self._categorical:
            v = features.get(name)
            if name in features and v is not None and not isinstance(v, str):
                issues.append(
                    Issue(
                        f"{prefix}.{name}",
                        "invalid_type",
                        f"expected a string (a category), got {_type_name(v)}",
                        name,
                    )
                )
            elif isinstance(v, str) and not text_ok(v):
                issues.append(Issue(f"{prefix}.{name}", "invalid_value", _NOT_TEXT, name))
        if len(issues) > MAX_ISSUES:
            # A 1 MiB request of 80,000 unknown features would otherwise get an 11 MB answer.
            more = len(issues) - MAX_ISSUES
            issues[MAX_ISSUES:] = [Issue(prefix, "too_many_issues", f"{more} more not listed")]
        return issues

    def _invalid(self, features: Any, prefix: str) -> InvalidInput:
        # The fast path only raises on a real problem, which check() finds; the fallback is
        # for safety, never a silent success.
        issues = self.check(features, prefix) or [Issue(prefix, "invalid_value", "unusable")]
        return InvalidInput(issues)

    def typical_row(self, card: ModelCard) -> dict[str, Any]:
        """A valid request for warm-up: fill values (or range midpoints), first categories."""
        row: dict[str, Any] = {}
        for f in card.features:
            if f.type == "categorical":
                row[f.name] = f.categories[0]
            elif f.fill is not None:
                row[f.name] = f.fill
            elif f.range is not None:
                row[f.name] = (f.range[0] + f.range[1]) / 2
            else:
                row[f.name] = 0.0
        return row


_TOO_LARGE = f"too large for the model's float32 input (magnitude at most {FLOAT32_MAX:.7g})"
_TOO_LONG = "integers must be within +-2**53 (what a float64 holds exactly): send a float"
# PostgreSQL text holds no NUL, and a surrogate has no UTF-8 encoding (wire.text_ok).
_NOT_TEXT = "must not hold a NUL character or a surrogate code point"


def request_id_issue(value: object, field: str = "request_id") -> Issue | None:
    """The problem with a caller's request id, or None: a wire name (``wire.name_ok``: a str
    of 1..MAX_ID_CHARS characters without NUL or surrogate), as labels name it."""
    if name_ok(value):
        return None
    if type(value) is not str:
        return Issue(field, "invalid_type", f"must be a str of 1..{MAX_ID_CHARS} characters")
    if not 0 < len(value) <= MAX_ID_CHARS:
        return Issue(field, "invalid_value", f"must have 1..{MAX_ID_CHARS} characters")
    return Issue(field, "invalid_value", _NOT_TEXT)


def _numeric(v: Any, low: float, high: float, fill: float | None) -> tuple[float, str | None]:
    """(value to use, warning code or None) for one numeric feature, or _Reject."""
    if v is None or (isinstance(v, float) and v != v):
        if fill is None:
            raise _Reject("invalid_value", "null, and this feature has no fill value")
        return fill, "missing_value"
    if isinstance(v, bool) or not isinstance(v, Real):
        # numpy numbers register as Real; bools are ints in Python but not numbers here.
        raise _Reject("invalid_type", f"expected a number, got {_type_name(v)}")
    if isinstance(v, Integral) and not -MAX_SAFE_INTEGER <= int(v) <= MAX_SAFE_INTEGER:
        raise _Reject("invalid_value", _TOO_LONG)  # JSON allows 10**400, the wire does not
    value = float(v)
    if value != value:
        if fill is None:
            raise _Reject("invalid_value", "NaN, and this feature has no fill value")
        return fill, "missing_value"
    if math.isinf(value):
        raise _Reject("invalid_value", "must be finite")
    if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
        raise _Reject("invalid_value", _TOO_LARGE)
    if not low <= value <= high:
        return value, "out_of_range"
    return value, None


def _warning(
    prefix: str,
    name: str,
    code: str,
    v: Any,
    low: float = 0.0,
    high: float = 0.0,
    *,
    categorical: bool = False,
) -> Issue:
    if code == "out_of_range":
        message = f"{v!r} is outside [{low:g}, {high:g}]; served as is"
    elif code == "missing_value" and categorical:
        message = "null; served as no category"
    elif code == "missing_value":
        message = "null; served as the card's fill value"
    else:
        message = f"unknown category {v!r}; served as no category"
    return Issue(f"{prefix}.{name}", code, message, name)
