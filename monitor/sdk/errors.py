"""Internal-error reporting: the SDK counts and logs its own failures instead of raising them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

InternalErrorHook = Callable[[BaseException], object]

_hook: InternalErrorHook | None = None


def set_internal_error_hook(fn: InternalErrorHook | None) -> None:
    """Call ``fn(exc)`` with every internal exception the SDK swallows (``None`` removes it).

    The test suite installs a hook that turns internal errors into test failures; an
    application may use it to forward them to its own error tracker.
    """
    global _hook
    _hook = fn


def report_internal_error(exc: BaseException, where: str) -> None:
    """Log ``exc`` and pass it to the hook; never raises (the caller counts it)."""
    # A broken logging setup must not reach the host application either.
    with contextlib.suppress(Exception):
        logger.error("edge-monitor SDK internal error in %s", where, exc_info=exc)
    hook = _hook
    if hook is not None:
        try:
            hook(exc)
        except Exception:
            logger.exception("edge-monitor internal-error hook failed")
