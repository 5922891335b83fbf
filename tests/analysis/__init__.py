"""Tests of drift, quality, performance and reports (monitor.analysis)."""
