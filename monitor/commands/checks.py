"""Input checks of the shared commands: names, texts, shares, model cards, reference data."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any

from monitor import wire
from monitor.card import CardError, ModelCard
from monitor.card import check_card as _check_card
from monitor.errors import ValidationFailed

#: Longest node group, site or pin group, in characters.
MAX_GROUP_CHARS = 128
#: Longest model description, in characters.
MAX_DESCRIPTION_CHARS = 1000

_PARQUET_MAGIC = b"PAR1"


def invalid(field: str, problem: str, message: str) -> ValidationFailed:
    """The error for one bad input, with its field path in the details."""
    return ValidationFailed(
        message, details=[{"code": "invalid_field", "field": field, "message": problem}]
    )


def check_name(value: str, field: str, what: str = "name") -> str:
    """A model, node or version name: it appears in URL paths, so ``wire.NAME_PATTERN``."""
    if not isinstance(value, str) or not re.match(wire.NAME_PATTERN, value):
        raise invalid(
            field,
            "invalid name",
            f"invalid {what} {value!r}: use letters, digits and _.-:@ "
            f"(at most {wire.MAX_ID_CHARS}, starting with a letter or digit)",
        )
    return value


def check_text(value: str | None, field: str, max_chars: int) -> str | None:
    """An optional free text (group, site, description): not empty when given, not too long."""
    if value is None:
        return None
    if not value or len(value) > max_chars:
        raise invalid(
            field,
            f"must be 1..{max_chars} characters",
            f"{field} must be 1..{max_chars} characters, got {len(value)}",
        )
    return value


def check_share(share: float) -> float:
    """A canary share: a number in (0, 1]."""
    if not (isinstance(share, int | float) and math.isfinite(share) and 0.0 < share <= 1.0):
        raise invalid("share", "(0, 1]", f"the canary share must be in (0, 1], got {share!r}")
    return float(share)


def check_card(card: Any, model: str) -> ModelCard:
    """A card fit for ``model``; every problem is listed with its field path."""
    try:
        return _check_card(card, model)
    except CardError as exc:
        raise ValidationFailed(
            f"invalid model card: {exc}",
            details=[
                {"code": "invalid_field", "field": path, "message": message}
                for path, message in exc.errors
            ],
        ) from exc


@dataclass(frozen=True, slots=True)
class Reference:
    """Reference data as stored: Parquet bytes and their row count."""

    parquet: bytes
    rows: int


def reference_parquet(data: bytes) -> Reference:
    """Reference data given as Parquet or CSV (with a header row), as Parquet.

    The format is told by the content, not a file name: the API receives bytes only.
    """
    if data[:4] == _PARQUET_MAGIC:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = int(pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows)
        except (pa.ArrowInvalid, OSError) as exc:
            raise invalid(
                "reference", "unreadable Parquet", f"the reference is not readable Parquet: {exc}"
            ) from exc
        if rows == 0:
            raise invalid("reference", "no rows", "the reference Parquet file has no rows")
        return Reference(data, rows)
    import pandas as pd

    neither = "the reference is neither Parquet nor CSV with a header row and data rows"
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (ValueError, OSError) as exc:  # pandas' parser and decoding errors are ValueErrors
        raise invalid("reference", "neither Parquet nor CSV", f"{neither}: {exc}") from exc
    if frame.empty:
        raise invalid("reference", "neither Parquet nor CSV", neither)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return Reference(buffer.getvalue(), len(frame))
