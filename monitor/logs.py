"""Logging of every edge-monitor process: readable text or one JSON object per line, for our
loggers and uvicorn's alike, from the settings (``log_level``, ``log_format``,
``log_heartbeats``)."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.config import Settings

#: The route every node calls every few seconds: its access-log lines drown everything else.
HEARTBEATS_PATH = "/v1/heartbeats"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord carries; anything else on a record came from ``extra=`` and is a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
#: uvicorn's access records carry their parts as the message's arguments.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, then the
    record's extra fields (an access line's client, method, path, http_version, status)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and _is_access(record.args):
            event.update(zip(_ACCESS_FIELDS, record.args, strict=True))  # type: ignore[arg-type]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in event:
                event[key] = value
        if record.exc_info:
            event["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        # default=str: an extra field need not be JSON (a datetime, a Path) to be logged.
        return json.dumps(event, default=str, ensure_ascii=False)


class DropHeartbeats(logging.Filter):
    """Leaves heartbeat requests out of the access log (``log_heartbeats`` off)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_access(record.args):
            return True
        path = str(record.args[2]).split("?", 1)[0]  # type: ignore[index]
        return path != HEARTBEATS_PATH


def _is_access(args: Any) -> bool:
    return isinstance(args, tuple) and len(args) == len(_ACCESS_FIELDS)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives, not to the stream of the
    moment it was made: a test's captured stream closes after the test, the handler stays."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(settings: Settings | None) -> None:
    """Make this process log as the settings say: root level and one stderr handler (None:
    an edge install without the settings, at their defaults, INFO and text).

    A process whose logging someone else set up already (a test runner, an application that
    calls ``main``) is left alone, as ``logging.basicConfig`` would; ours is replaced, so
    calling this twice does not print each line twice."""
    level, log_format = (
        ("INFO", "text") if settings is None else (settings.log_level, settings.log_format)
    )
    root = logging.getLogger()
    if any(not isinstance(handler, StderrHandler) for handler in root.handlers):
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(_apscheduler_level(level))
    # httpx logs an INFO line per request: the webhook delivery job logs each outcome itself.
    logging.getLogger("httpx").setLevel(_apscheduler_level(level))


def _apscheduler_level(level: str) -> str:
    # APScheduler logs two INFO lines for every run of every job (several a minute): our jobs
    # log what they found instead; DEBUG brings them back.
    return "DEBUG" if level == "DEBUG" else "WARNING"


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``log_config``: its error and access logs and our loggers (in each collector
    process: with ``--workers`` > 1 every process applies it) in the settings' format;
    heartbeats left out of the access log unless ``log_heartbeats``."""
    chosen = (
        {"()": "monitor.logs.JsonFormatter"}
        if settings.log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    access: dict[str, Any] = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
    if not settings.log_heartbeats:
        access["filters"] = ["heartbeats"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": chosen},
        "filters": {"heartbeats": {"()": "monitor.logs.DropHeartbeats"}},
        "handlers": {"stderr": {"()": "monitor.logs.StderrHandler", "formatter": "default"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": settings.log_level, "propagate": False},
            "uvicorn.error": {"level": settings.log_level},
            "uvicorn.access": access,
            "apscheduler": {"level": _apscheduler_level(settings.log_level)},
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level},
    }
