"""Drift, data quality and performance of model windows; the only package that uses Evidently.

Pure: DataFrames in, columnar results out (the schema of ``monitor.schema``), every verdict
decided by ``monitor.analysis.policy``. Build a ``ReferenceProfile`` once per model version,
then analyse each window against it for the fleet and every site, group and node at once.
"""

from monitor.analysis.drift import DriftResult, analyse_drift
from monitor.analysis.performance import PerformanceResult, analyse_performance
from monitor.analysis.policy import AnalysisPolicy, DriftPolicy, QualityThresholds
from monitor.analysis.profile import ReferenceProfile
from monitor.analysis.quality import NewCategory, QualityResult, SchemaIssue, analyse_quality
from monitor.analysis.report import EvidentlyReport, evidently_report, render_snapshot
from monitor.analysis.spec import METHODS, DriftSpec

__all__ = [
    "METHODS",
    "AnalysisPolicy",
    "DriftPolicy",
    "DriftResult",
    "DriftSpec",
    "EvidentlyReport",
    "NewCategory",
    "PerformanceResult",
    "QualityResult",
    "QualityThresholds",
    "ReferenceProfile",
    "SchemaIssue",
    "analyse_drift",
    "analyse_performance",
    "analyse_quality",
    "evidently_report",
    "render_snapshot",
]
