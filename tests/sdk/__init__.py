"""Tests of the edge SDK (monitor.sdk)."""
