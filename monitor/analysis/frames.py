"""Result objects as DataFrames: one column per dataclass field, one row per object."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

import pandas as pd


def dataclass_frame(items: Sequence[Any], cls: type) -> pd.DataFrame:
    """``items`` (instances of dataclass ``cls``) as a DataFrame, columns in field order."""
    names = [f.name for f in fields(cls)]
    getter = attrgetter(*names)
    return pd.DataFrame([getter(item) for item in items], columns=names)
