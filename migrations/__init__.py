"""Alembic migrations of the edge-monitor schema, shipped as ``monitor.migrations``."""
