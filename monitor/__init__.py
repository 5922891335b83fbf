"""edge-monitor: drift, data-quality and accuracy monitoring for ML models on edge devices."""

__version__ = "0.1.0"
