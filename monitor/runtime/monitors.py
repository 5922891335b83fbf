"""One SDK Monitor per model version, each with its own spool directory (a MonitorFactory).

Why not one Monitor for every version: a Monitor is bound to one ``model_version`` and the
records in its spool carry none, so a Monitor reopened on the same spool after a swap would
ship the previous version's unsent records as the new version's. And two Monitors cannot share
a spool directory at the same time (the second finds it locked and runs memory-only), which a
swap needs for a moment: the old Monitor finishes its in-flight calls while the new one starts.

Layout: ``<spool_root>/<version>/`` is a normal SDK spool directory (the version with any
character outside ``A-Za-z0-9._-`` replaced by ``_``) holding a ``model_version`` file with
the exact version. A version's Monitor is closed after a swap (flushing what it can); records
it could not deliver stay in its directory, and the first Monitor made in a later process
(``drain_leftovers``) opens each other version's directory in the background and delivers
them under their own version.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from monitor.sdk import Monitor
from monitor.sdk.monitor import default_spool_dir

logger = logging.getLogger(__name__)

VERSION_FILE = "model_version"


def _safe(version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version)
    return "_" + safe if safe in (".", "..") else safe


class VersionedMonitors:
    """A ``MonitorFactory``: ``factory(model_version, telemetry) -> Monitor``.

    Args:
        url, token, model: as for ``Monitor``.
        spool_root: where the per-version spool directories go. ``None``: the SDK's default
            spool directory of ``model`` plus ``/versions``. ``False``: memory-only Monitors
            (no durability, no leftovers).
        drain_timeout: seconds a leftover directory's Monitor may take to deliver.
        **monitor_options: passed to every ``Monitor`` (``sample_rate``, ``heartbeat_interval``
            ...); ``spool_dir`` and ``telemetry`` are set here.
    """

    def __init__(
        self,
        url: str,
        token: str,
        model: str,
        *,
        spool_root: str | os.PathLike[str] | Literal[False] | None = None,
        drain_timeout: float = 60.0,
        **monitor_options: Any,
    ) -> None:
        for key in ("spool_dir", "telemetry", "model_version"):
            if key in monitor_options:
                raise ValueError(f"{key} is set by VersionedMonitors")
        self.url = url
        self.token = token
        self.model = model
        self.options = monitor_options
        self.drain_timeout = drain_timeout
        if spool_root is False:
            self.root: Path | None = None
        elif spool_root is None:
            self.root = default_spool_dir(model) / "versions"
        else:
            self.root = Path(spool_root)
        self._lock = threading.Lock()
        #: Every Monitor made, in order (the runtime closes those it swapped away from; their
        #: counters stay readable, so a run's totals add up every version's).
        self.made: list[Monitor] = []
        self._drained = False
        self.drain_thread: threading.Thread | None = None

    def spool_dir(self, version: str) -> Path | None:
        """The spool directory of ``version`` (None when memory-only)."""
        return None if self.root is None else self.root / _safe(version)

    def __call__(self, model_version: str, telemetry: Callable[[], dict[str, Any]]) -> Monitor:
        directory = self.spool_dir(model_version)
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                (directory / VERSION_FILE).write_text(model_version, encoding="utf-8")
            except OSError as exc:  # the Monitor itself reports an unusable spool and goes on
                logger.error("edge-monitor runtime: cannot prepare %s: %s", directory, exc)
        monitor = Monitor(
            self.url,
            self.token,
            self.model,
            model_version,
            spool_dir=directory if directory is not None else False,
            telemetry=telemetry,
            **self.options,
        )
        with self._lock:
            self.made.append(monitor)
            first, self._drained = not self._drained, True
        if first and self.root is not None:
            self.drain_thread = threading.Thread(
                target=self.drain_leftovers,
                args=(model_version,),
                name="edge-runtime-drain",
                daemon=True,
            )
            self.drain_thread.start()
        return monitor

    def drain_leftovers(self, current: str) -> list[str]:
        """Deliver what other versions' directories still hold; returns the versions seen."""
        if self.root is None or not self.root.is_dir():
            return []
        drained = []
        for directory in sorted(self.root.iterdir()):
            try:
                version = (directory / VERSION_FILE).read_text(encoding="utf-8")
                pending = any(p.suffix == ".jsonl" for p in directory.iterdir())
            except OSError:
                continue
            if version == current or not pending:
                continue
            options = {**self.options, "heartbeat_interval": None}
            monitor = Monitor(
                self.url, self.token, self.model, version, spool_dir=directory, **options
            )
            try:
                if not monitor.flush(self.drain_timeout):
                    logger.warning(
                        "edge-monitor runtime: records of %s %s still undelivered in %s",
                        self.model,
                        version,
                        directory,
                    )
            finally:
                monitor.close(timeout=5.0)
            drained.append(version)
        return drained
