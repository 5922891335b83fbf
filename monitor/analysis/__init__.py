"""Drift, data quality and performance of model windows; the only package that uses Evidently.

Pure: DataFrames in, frozen result objects out. Build a ``ReferenceProfile`` once per model
version, then analyse each window against it for the fleet and every node and group at once.
"""

from monitor.analysis.drift import DriftResult, DriftRow, ScopeDrift, analyse_drift
from monitor.analysis.profile import ReferenceProfile
from monitor.analysis.scopes import FLEET, FLEET_KEY, scope_keys
from monitor.analysis.spec import DriftSpec

__all__ = [
    "FLEET",
    "FLEET_KEY",
    "DriftResult",
    "DriftRow",
    "DriftSpec",
    "ReferenceProfile",
    "ScopeDrift",
    "analyse_drift",
    "scope_keys",
]
