"""Baseline commands: `edge-monitor models baseline`."""

from __future__ import annotations

from typing import Any


def add_model_commands(models: Any) -> None:
    """Add this module's commands to the ``models`` subparsers."""
