"""Edge SDK: ``Monitor`` samples, spools, batches and ships predictions to the collector.

Standard library only, so that an edge node installing ``edge-monitor`` gets no extras.
"""

from __future__ import annotations

from monitor.sdk.errors import set_internal_error_hook
from monitor.sdk.monitor import Monitor
from monitor.sdk.options import MonitorOptions

__all__ = ["Monitor", "MonitorOptions", "set_internal_error_hook"]
