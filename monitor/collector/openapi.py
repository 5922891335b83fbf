"""The collector's OpenAPI document: request bodies, refusals and bearer security per route.

Routes declare what they take and answer with the helpers below (``operation``, ``refusals``);
none of them changes how a request is handled. The ingest routes read their bodies raw, within
the body budget (``budget.py``), so FastAPI does not know their schemas: ``operation`` names the
pydantic model of ``schemas`` that describes the body, and ``document`` adds those models to the
components. Authentication stays in ``auth.py`` and ``admission.py``; the security schemes only
say which token a route wants. FastAPI's default 422 (its ``HTTPValidationError``) is replaced
by our error envelope, which every refusal documents, with the stable codes a route can answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from monitor.collector.schemas import ErrorEnvelope
from monitor.errors import envelope

REF = "#/components/schemas/"

#: The security scheme of node tokens (edge nodes; labellers' tokens are node tokens too).
NODE_TOKEN = "nodeToken"
#: The security scheme of the admin token (MONITOR_ADMIN_TOKEN).
ADMIN_TOKEN = "adminToken"
#: The security scheme of the read token (MONITOR_READ_TOKEN): results and node health only.
READ_TOKEN = "readToken"

SECURITY_SCHEMES: dict[str, Any] = {
    NODE_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "emn_…",
        "description": "A node's own token, shown once by `edge-monitor nodes add` (or "
        "`POST /v1/admin/nodes`). A labeller's token (`nodes add --labeller`) is a node token "
        "that may only send labels. Revocation is effective on the next request.",
    },
    ADMIN_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ema_…",
        "description": "The operator's token (MONITOR_ADMIN_TOKEN); without one the admin API "
        "answers 403 `admin_disabled`.",
    },
    READ_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "description": "A token that may read results, node health and alerts and nothing else "
        "(MONITOR_READ_TOKEN); the admin token reads them too. Without either the read API "
        "answers 403 `read_disabled`.",
    },
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the same request again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}

#: Request body models by name, added to the document's components by ``document``.
_BODIES: dict[str, type[BaseModel]] = {}


@dataclass(frozen=True)
class Refusal:
    """One way a route refuses: its status, its stable codes and when it happens."""

    status: int
    codes: tuple[str, ...]
    when: str
    retry_after: bool = False


# --- refusals every route shares -------------------------------------------------------------

TIMEOUT = Refusal(
    408,
    ("request_timeout",),
    "Headers or body not complete in time (MONITOR_HEADER_TIMEOUT_SECONDS, "
    "MONITOR_BODY_TIMEOUT_SECONDS); the connection is closed.",
)
HEADERS_TOO_LARGE = Refusal(
    431, ("headers_too_large",), "Headers larger than MONITOR_MAX_HEADER_BYTES."
)
DATABASE_DOWN = Refusal(
    503,
    ("database_unavailable",),
    "The database is down or a write waited too long for a lock; nothing was stored.",
    retry_after=True,
)

# --- node routes ---------------------------------------------------------------------------

UNREADABLE = Refusal(
    400,
    (
        "malformed_json",
        "invalid_number",
        "invalid_string",
        "too_deep",
        "bad_gzip",
        "unsupported_encoding",
    ),
    "The body cannot be read: not JSON; NaN, Infinity or a number beyond float64; invalid "
    "UTF-8 or a lone surrogate; nested deeper than 1,024 levels; broken gzip; a "
    "Content-Encoding other than gzip.",
)
NO_NODE_TOKEN = Refusal(
    401,
    ("unauthorized", "invalid_token"),
    "No `Authorization: Bearer` token, or one that matches no node (or was revoked). "
    "Checked before the body is read.",
)
WRONG_ROLE = Refusal(403, ("wrong_role",), "A labeller's token: it may only send labels.")
NOT_GRANTED = Refusal(
    403,
    ("model_not_granted",),
    "The node is not registered for this model (`edge-monitor nodes grant`).",
)
TOO_LARGE = Refusal(
    413,
    ("payload_too_large",),
    "Larger than MONITOR_MAX_WIRE_BYTES on the wire or MONITOR_MAX_DECODED_BYTES decoded "
    "(5 MiB and 20 MiB by default); the SDK splits a batch and sends the halves.",
)
RATE_LIMITED = Refusal(
    429,
    ("rate_limited",),
    "This node sends faster than its rate (MONITOR_RATE_LIMIT_PER_SECOND, burst "
    "MONITOR_RATE_LIMIT_BURST).",
    retry_after=True,
)
BUSY = Refusal(
    503,
    ("busy",),
    "The body does not fit in this process's body budget now (MONITOR_BODY_MEMORY_BYTES).",
    retry_after=True,
)

# --- admin routes --------------------------------------------------------------------------

NO_ADMIN_TOKEN = Refusal(
    401,
    ("unauthorized", "invalid_token"),
    "No `Authorization: Bearer` token, or not the admin token. Checked before the body is read.",
)
ADMIN_DISABLED = Refusal(
    403, ("admin_disabled",), "The admin API is off: the collector has no MONITOR_ADMIN_TOKEN."
)

# --- read routes ---------------------------------------------------------------------------

NO_READ_TOKEN = Refusal(
    401,
    ("unauthorized", "invalid_token"),
    "No `Authorization: Bearer` token, or neither the read token nor the admin token.",
)
READ_DISABLED = Refusal(
    403,
    ("read_disabled",),
    "The read API is off: the collector has neither MONITOR_READ_TOKEN nor MONITOR_ADMIN_TOKEN.",
)

#: An admin route's body that FastAPI cannot read as text (malformed JSON is 422).
ADMIN_UNREADABLE = Refusal(400, ("bad_request",), "The body is not JSON text (e.g. not UTF-8).")


def not_found(*codes: str) -> Refusal:
    return Refusal(404, codes, "What the path names does not exist.")


def conflict(*codes: str) -> Refusal:
    return Refusal(409, codes, "The request conflicts with the registry's current state.")


def invalid(
    *codes: str, when: str = "The body or a name breaks a rule; details name fields."
) -> Refusal:
    return Refusal(422, codes or ("validation_failed",), when)


#: A name in the path or a string of an admin body that PostgreSQL cannot hold.
UNSTORABLE = Refusal(
    422,
    ("invalid_string", "invalid_value"),
    "A name in the path or a string of the body holds NUL, or a value does not fit the database.",
)


#: What every route may answer, whatever it does.
ANY_ROUTE = (TIMEOUT, HEADERS_TOO_LARGE)
#: What every node route that reads a body may answer besides its own refusals.
NODE_BODY = (*ANY_ROUTE, UNREADABLE, NO_NODE_TOKEN, TOO_LARGE, RATE_LIMITED, BUSY, DATABASE_DOWN)
#: What every admin route may answer besides its own refusals.
ADMIN = (*ANY_ROUTE, NO_ADMIN_TOKEN, ADMIN_DISABLED, DATABASE_DOWN)
#: What every read route may answer besides its own refusals.
READER = (*ANY_ROUTE, NO_READ_TOKEN, READ_DISABLED, DATABASE_DOWN)


def refusals(*groups: Refusal | Iterable[Refusal]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: the error envelope under each status, with the codes
    (and their meaning) of every refusal given, and Retry-After where the caller should wait."""
    flat: list[Refusal] = []
    for group in groups:
        flat.extend([group] if isinstance(group, Refusal) else group)
    by_status: dict[int, list[Refusal]] = {}
    for refusal in flat:
        by_status.setdefault(refusal.status, []).append(refusal)
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(by_status):
        found = by_status[status]
        examples = {
            code: {"value": envelope(code, refusal.when)}
            for refusal in found
            for code in refusal.codes
        }
        response: dict[str, Any] = {
            "model": ErrorEnvelope,
            "description": " ".join(
                f"{refusal.when} ({', '.join(f'`{c}`' for c in refusal.codes)})"
                for refusal in found
            ),
            "content": {"application/json": {"examples": examples}},
        }
        if any(refusal.retry_after for refusal in found):
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    return responses


def operation(
    *,
    security: Iterable[str] = (),
    body: type[BaseModel] | None = None,
    gzip: bool = False,
) -> dict[str, Any]:
    """The ``openapi_extra=`` of a route: its bearer schemes (any one of them will do) and,
    for a route that reads its body raw, that body's model (and whether it may be gzip)."""
    extra: dict[str, Any] = {}
    schemes = list(security)
    if schemes:
        extra["security"] = [{scheme: []} for scheme in schemes]
    if body is not None:
        _BODIES[body.__name__] = body
        media: dict[str, Any] = {"schema": {"$ref": REF + body.__name__}}
        example = _example_of(body)
        if example is not None:
            media["example"] = example
        extra["requestBody"] = {"required": True, "content": {"application/json": media}}
    if gzip:
        extra["parameters"] = [
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": False,
                "description": "gzip to send the body compressed (the SDK does); none for plain",
                "schema": {"type": "string", "enum": ["gzip", "identity"]},
            }
        ]
    return extra


def _example_of(model: type[BaseModel]) -> Any:
    extra = model.model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return examples[0] if isinstance(examples, list) and examples else None


def install(app: FastAPI) -> None:
    """Serve ``document(app)`` as the app's /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of ``app`` with the raw-body routes' schemas, the security schemes,
    and no trace of FastAPI's own validation error shape (the envelope replaces it)."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for path in doc.get("paths", {}).values():
        for op in path.values():
            responses = op.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                # FastAPI adds it to any route with a parameter; a route whose 422 is real
                # declares it with the envelope.
                del responses["422"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _, defs = models_json_schema(
        [(model, "validation") for model in _BODIES.values()], ref_template=REF + "{model}"
    )
    for name, schema in defs.get("$defs", {}).items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two schemas named {name} in the collector's OpenAPI document")
        schemas[name] = schema
    components["securitySchemes"] = SECURITY_SCHEMES
    return doc
