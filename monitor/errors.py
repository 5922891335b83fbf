"""Domain exceptions, each with its HTTP status and a stable error code."""

from __future__ import annotations

from typing import Any


def envelope(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error body of the API: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code, "message": message, "details": details}}


class MonitorError(Exception):
    """Base of every error the service reports to a caller."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        """This error as the API's error body."""
        return envelope(self.code, self.message, self.details)


class BadRequest(MonitorError):
    """The body cannot be read at all (not JSON, bad encoding)."""

    status = 400
    code = "bad_request"


class ValidationFailed(MonitorError):
    """The body is readable but does not have the documented shape; details list field paths."""

    status = 422
    code = "validation_failed"


class PayloadTooLarge(MonitorError):
    """The body is larger than allowed on the wire or once decompressed."""

    status = 413
    code = "payload_too_large"


class Unauthorized(MonitorError):
    """No credentials, or credentials that match nothing (or were revoked)."""

    status = 401
    code = "unauthorized"


class Forbidden(MonitorError):
    """Valid credentials that may not do this."""

    status = 403
    code = "forbidden"


class NotFound(MonitorError):
    """The addressed resource does not exist."""

    status = 404
    code = "not_found"


class Conflict(MonitorError):
    """The request conflicts with the current state (e.g. a name already taken)."""

    status = 409
    code = "conflict"


class Unavailable(MonitorError):
    """The service cannot take the request now; the caller should retry after a while."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class SchemaOutOfDate(MonitorError):
    """The database is not at the migration head this code expects."""

    status = 503
    code = "schema_out_of_date"
