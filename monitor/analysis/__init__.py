"""Drift, data quality and performance of model windows; the only package that uses Evidently.

Pure: DataFrames in, frozen result objects out. Build a ``ReferenceProfile`` once per model
version, then analyse each window against it for the fleet and every node and group at once.
"""

from monitor.analysis.cache import ProfileCache
from monitor.analysis.drift import DriftResult, DriftRow, ScopeDrift, analyse_drift
from monitor.analysis.performance import PerformanceResult, PerformanceRow, analyse_performance
from monitor.analysis.profile import ReferenceProfile
from monitor.analysis.quality import (
    NewCategory,
    QualityResult,
    QualityRow,
    SchemaIssue,
    analyse_quality,
)
from monitor.analysis.report import EvidentlyReport, evidently_report, html_report, render_snapshot
from monitor.analysis.scopes import FLEET, FLEET_KEY, scope_keys
from monitor.analysis.spec import METHODS, DriftSpec

__all__ = [
    "FLEET",
    "FLEET_KEY",
    "METHODS",
    "DriftResult",
    "DriftRow",
    "DriftSpec",
    "EvidentlyReport",
    "NewCategory",
    "PerformanceResult",
    "PerformanceRow",
    "ProfileCache",
    "QualityResult",
    "QualityRow",
    "ReferenceProfile",
    "SchemaIssue",
    "ScopeDrift",
    "analyse_drift",
    "analyse_performance",
    "analyse_quality",
    "evidently_report",
    "html_report",
    "render_snapshot",
    "scope_keys",
]
