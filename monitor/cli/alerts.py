"""Commands of alert rules and alerts: `edge-monitor alerts ...`."""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Add this module's commands to the ``commands`` subparsers."""
