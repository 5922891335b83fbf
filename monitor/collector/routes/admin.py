"""The admin API: register and revoke nodes, register models. Guarded by the admin token."""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector import schemas
from monitor.collector.auth import admin_only
from monitor.collector.openapi import (
    ADMIN,
    ADMIN_TOKEN,
    ADMIN_UNREADABLE,
    UNSTORABLE,
    Refusal,
    conflict,
    invalid,
    not_found,
    operation,
    refusals,
)
from monitor.collector.state import state_of
from monitor.commands import models, nodes
from monitor.commands.datasets import SchemaChoice
from monitor.commands.models import Rollout
from monitor.errors import ValidationFailed
from monitor.storage.nodes import Node
from monitor.storage.registry import Deployment, Version

router = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(admin_only)])


def _declared(*own: Refusal, takes_input: bool = True) -> dict[str, Any]:
    """A route's refusals (the admin token's, the protocol's, its own, and for a route with
    path names or a body, what PostgreSQL cannot store) and its security."""
    given = (UNSTORABLE,) if takes_input else ()
    return {
        "responses": refusals(ADMIN, *own, *given),
        "openapi_extra": operation(security=[ADMIN_TOKEN]),
    }


_NO_MODEL = not_found("unknown_model")
_NO_VERSION = not_found("unknown_model", "unknown_version")

# Names, versions, groups and shares are checked by monitor.commands, not here, so that the
# API and the CLI refuse the same input with the same code and message.
_NAME_RULE = f"letters, digits and _.-:@, at most {wire.MAX_ID_CHARS} characters"
# The same rules, shown in the document only (json_schema_extra is not validated).
_NAME_SCHEMA: dict[str, Any] = {"pattern": schemas.NAME_JSON_PATTERN}
_GROUP_SCHEMA: dict[str, Any] = {"maxLength": 128}


def _text(value: str) -> str:
    # The wire's rule for every string (PostgreSQL stores no NUL, UTF-8 no lone surrogate):
    # refused here, with the field's path, on every database alike.
    if not wire.text_ok(value):
        raise ValueError("must not hold NUL (\\u0000) or a lone surrogate")
    return value


Text = Annotated[
    str, AfterValidator(_text), Field(json_schema_extra={"pattern": schemas.TEXT_PATTERN})
]


class NodeIn(BaseModel):
    name: Text = Field(description=_NAME_RULE, json_schema_extra=_NAME_SCHEMA)
    group: Text | None = Field(
        default=None, description="at most 128 characters", json_schema_extra=_GROUP_SCHEMA
    )
    site: Text | None = Field(
        default=None, description="at most 128 characters", json_schema_extra=_GROUP_SCHEMA
    )
    tags: dict[str, Text] = Field(default_factory=dict)
    models: list[Text] = Field(
        default_factory=list, description="models whose assignment and artifacts it may fetch"
    )
    role: Text = Field(
        default="node",
        description='"node", or "labeller": a back-office token that labels any node\'s records',
    )


class VersionIn(BaseModel):
    """An ONNX artifact with its card (and optionally reference data), or reference data alone
    (a model that runs elsewhere: drift without the bundled runtime) with its version."""

    version: Text | None = Field(
        default=None,
        description=f"{_NAME_RULE}; default: the card's (required for a reference alone)",
    )
    artifact_base64: str | None = Field(
        default=None, description="the ONNX file, base64 (with card; omit for a reference alone)"
    )
    # Any JSON: the command's card check names what is wrong, as it does for the CLI.
    card: Any = Field(
        default=None,
        description="the model card (with artifact_base64)",
        json_schema_extra={"type": "object"},
    )
    reference_base64: str | None = Field(
        default=None, description="the reference dataset as Parquet or CSV, base64"
    )
    metrics: dict[str, Any] | None = Field(default=None, description="default: the card's")
    # A reference alone: its schema is inferred, with these overrides, or given whole.
    categorical: list[Text] = Field(
        default_factory=list, description="reference alone: columns compared as categories"
    )
    numerical: list[Text] = Field(
        default_factory=list, description="reference alone: columns compared as numbers"
    )
    ignore: list[Text] = Field(
        default_factory=list, description="reference alone: columns left out of the analysis"
    )
    prediction: Text | None = Field(
        default=None, description="reference alone: the prediction's column (default: prediction)"
    )
    label: Text | None = Field(
        default=None, description="reference alone: the label's column (default: label)"
    )
    probabilities: dict[Text, Text] = Field(
        default_factory=dict,
        description="reference alone: class -> its probability's column "
        "(default: proba:<class>, probability_<class>)",
    )
    task: Literal["classification", "regression"] | None = Field(
        default=None, description="reference alone: default inferred from the prediction"
    )
    positive_class: Text | None = Field(
        default=None, description="reference alone: the class binary metrics score"
    )
    # "schema" is a BaseModel method's name: the field is named otherwise, read as "schema".
    data_schema: Any = Field(
        default=None,
        alias="schema",
        description="reference alone: the whole data schema, instead of inference and the "
        "overrides (the format of monitor/dataschema.py)",
        json_schema_extra={"type": "object"},
    )

    def choice(self) -> SchemaChoice:
        return SchemaChoice(
            categorical=tuple(self.categorical),
            numerical=tuple(self.numerical),
            ignore=tuple(self.ignore),
            prediction=self.prediction,
            label=self.label,
            probabilities=self.probabilities,
            task=self.task,
            positive_class=self.positive_class,
            schema=self.data_schema,
        )


class CanaryIn(BaseModel):
    version: Text
    share: float = Field(
        description="share of nodes, (0, 1]",
        json_schema_extra={"exclusiveMinimum": 0, "maximum": 1},
    )


class PinIn(BaseModel):
    version: Text
    group: Text = Field(description="at most 128 characters", json_schema_extra=_GROUP_SCHEMA)


class ModelIn(BaseModel):
    name: Text = Field(description=_NAME_RULE, json_schema_extra=_NAME_SCHEMA)
    description: Text = Field(default="", description="at most 1000 characters")


@router.post(
    "/nodes",
    status_code=201,
    summary="Register a node; its token is shown only here",
    response_model=schemas.NewNode,
    **_declared(ADMIN_UNREADABLE, _NO_MODEL, conflict("node_exists"), invalid()),
)
async def add_node(request: Request, body: NodeIn) -> JSONResponse:
    added = await run_in_threadpool(
        nodes.add_node,
        state_of(request).engine,
        body.name,
        group=body.group,
        site=body.site,
        tags=body.tags,
        role=body.role,
        model_names=body.models,
    )
    return JSONResponse(
        {**_node_json(added.node), "models": body.models, "token": added.token}, status_code=201
    )


@router.get(
    "/nodes",
    summary="List nodes",
    response_model=schemas.NodeList,
    **_declared(takes_input=False),
)
async def list_nodes(request: Request) -> JSONResponse:
    engine = state_of(request).engine
    listed = await run_in_threadpool(nodes.list_nodes, engine)
    granted = await run_in_threadpool(nodes.node_models, engine)
    return JSONResponse(
        {"nodes": [{**_node_json(n), "models": granted.get(n.id, [])} for n in listed]}
    )


@router.put(
    "/nodes/{name}/models/{model}",
    summary="Let a node fetch a model's versions",
    response_model=schemas.GrantedNode,
    **_declared(not_found("unknown_node", "unknown_model"), invalid()),
)
async def grant_model(request: Request, name: str, model: str) -> JSONResponse:
    node = await run_in_threadpool(nodes.grant_model, state_of(request).engine, name, model)
    return JSONResponse({**_node_json(node), "granted": model})


@router.delete(
    "/nodes/{name}/models/{model}",
    summary="Take a model away from a node",
    response_model=schemas.Withdrawn,
    **_declared(not_found("unknown_node", "unknown_model")),
)
async def withdraw_model(request: Request, name: str, model: str) -> JSONResponse:
    had = await run_in_threadpool(nodes.withdraw_model, state_of(request).engine, name, model)
    return JSONResponse({"node": name, "model": model, "withdrawn": had})


@router.post(
    "/nodes/{name}/revoke",
    summary="Revoke a node's token, effective at once",
    response_model=schemas.NodeOut,
    **_declared(not_found("unknown_node")),
)
async def revoke_node(request: Request, name: str) -> JSONResponse:
    revoked = await run_in_threadpool(nodes.revoke_node, state_of(request).engine, name)
    return JSONResponse(_node_json(revoked))


@router.post(
    "/models",
    status_code=201,
    summary="Register a model",
    response_model=schemas.ModelOut,
    **_declared(ADMIN_UNREADABLE, conflict("model_exists"), invalid()),
)
async def add_model(request: Request, body: ModelIn) -> JSONResponse:
    model = await run_in_threadpool(
        models.add_model, state_of(request).engine, body.name, description=body.description
    )
    return JSONResponse(_jsonable(asdict(model)), status_code=201)


@router.get(
    "/models",
    summary="List models",
    response_model=schemas.ModelList,
    **_declared(takes_input=False),
)
async def list_models(request: Request) -> JSONResponse:
    listed = await run_in_threadpool(models.list_models, state_of(request).engine)
    return JSONResponse({"models": [_jsonable(asdict(m.model)) for m in listed]})


#: The body carries the command's byte inputs base64-encoded, under these names.
_BODY_FIELDS = {"artifact": "artifact_base64", "reference": "reference_base64"}


@router.post(
    "/models/{name}/versions",
    status_code=201,
    summary="Register a version (a candidate)",
    response_model=schemas.VersionOut,
    **_declared(ADMIN_UNREADABLE, _NO_MODEL, conflict("version_exists"), invalid()),
)
async def register_version(request: Request, name: str, body: VersionIn) -> JSONResponse:
    engine = state_of(request).engine
    reference = (
        _b64(body.reference_base64, "reference_base64")
        if body.reference_base64 is not None
        else None
    )
    try:
        if body.artifact_base64 is None and body.card is None:
            version = await run_in_threadpool(_register_reference, engine, name, body, reference)
        else:
            _runtime_registration(body)
            assert body.artifact_base64 is not None
            version = await run_in_threadpool(
                models.register_version,
                engine,
                name,
                artifact=_b64(body.artifact_base64, "artifact_base64"),
                card=body.card,
                reference=reference,
                version=body.version,
                metrics=body.metrics,
            )
    except ValidationFailed as exc:
        raise _in_body_terms(exc) from exc
    return JSONResponse(version_json(version), status_code=201)


def _register_reference(
    engine: Any, name: str, body: VersionIn, reference: bytes | None
) -> Version:
    if reference is None:
        raise _missing("reference_base64", "give artifact_base64 and card, or reference_base64")
    if body.version is None:
        raise _missing("version", "a reference without a card needs a version")
    registered = models.register_reference(
        engine, name, body.version, reference, body.choice(), metrics=body.metrics
    )
    return registered.version


def _runtime_registration(body: VersionIn) -> None:
    """An artifact goes with its card, and the card gives the schema."""
    if body.artifact_base64 is None:
        raise _missing("artifact_base64", "a card goes with its artifact_base64")
    if body.card is None:
        raise _missing("card", "artifact_base64 goes with its card")
    given = body.choice().overrides + (["schema"] if body.data_schema is not None else [])
    if given:
        raise _missing(given[0], f"{given[0]} is for a reference alone: the card gives the schema")


def _missing(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message, details=[{"code": "invalid_field", "field": field, "message": message}]
    )


@router.get(
    "/models/{name}/versions",
    summary="Versions and the current rollout",
    response_model=schemas.VersionList,
    **_declared(_NO_MODEL),
)
async def list_versions(request: Request, name: str) -> JSONResponse:
    listing = await run_in_threadpool(models.model_versions, state_of(request).engine, name)
    return JSONResponse(
        {
            "versions": [version_json(v) for v in listing.versions],
            "deployment": deployment_json(listing.deployment),
        }
    )


@router.post(
    "/models/{name}/promote/{version}",
    summary="Make a version production",
    response_model=schemas.Rollout,
    **_declared(_NO_VERSION, conflict("already_production", "bad_stage")),
)
async def promote(request: Request, name: str, version: str) -> JSONResponse:
    return _rollout_json(
        await run_in_threadpool(models.promote, state_of(request).engine, name, version)
    )


@router.post(
    "/models/{name}/canary",
    summary="Send a candidate to a share of the nodes",
    response_model=schemas.Rollout,
    **_declared(ADMIN_UNREADABLE, _NO_VERSION, conflict("bad_stage"), invalid()),
)
async def canary(request: Request, name: str, body: CanaryIn) -> JSONResponse:
    return _rollout_json(
        await run_in_threadpool(
            models.start_canary, state_of(request).engine, name, body.version, body.share
        )
    )


@router.delete(
    "/models/{name}/canary",
    summary="Stop the canary",
    response_model=schemas.Rollout,
    **_declared(_NO_MODEL, conflict("no_canary")),
)
async def stop_canary(request: Request, name: str) -> JSONResponse:
    return _rollout_json(
        await run_in_threadpool(models.stop_canary, state_of(request).engine, name)
    )


@router.post(
    "/models/{name}/pins",
    summary="Pin a node group to a version",
    response_model=schemas.Rollout,
    **_declared(ADMIN_UNREADABLE, _NO_VERSION, conflict("bad_stage"), invalid()),
)
async def pin(request: Request, name: str, body: PinIn) -> JSONResponse:
    return _rollout_json(
        await run_in_threadpool(
            models.pin, state_of(request).engine, name, body.version, body.group
        )
    )


@router.delete(
    "/models/{name}/pins/{group}",
    summary="Unpin a node group",
    response_model=schemas.Rollout,
    **_declared(not_found("unknown_model", "not_pinned")),
)
async def unpin(request: Request, name: str, group: str) -> JSONResponse:
    return _rollout_json(
        await run_in_threadpool(models.unpin, state_of(request).engine, name, group)
    )


@router.post(
    "/models/{name}/rollback",
    summary="Put the previous production version back",
    response_model=schemas.Rollout,
    **_declared(_NO_MODEL, conflict("no_previous")),
)
async def rollback(request: Request, name: str) -> JSONResponse:
    return _rollout_json(await run_in_threadpool(models.rollback, state_of(request).engine, name))


def _rollout_json(rollout: Rollout) -> JSONResponse:
    return JSONResponse({"deployment": deployment_json(rollout.deployment)})


def version_json(version: Version) -> dict[str, Any]:
    return _jsonable(asdict(version))


def deployment_json(current: Deployment) -> dict[str, Any]:
    def name(v: Version | None) -> str | None:
        return None if v is None else v.version

    return {
        "production": name(current.production),
        "previous": name(current.previous),
        "canary": name(current.canary),
        "canary_share": current.canary_share,
        "pins": {group: v.version for group, v in current.pins.items()},
    }


def _in_body_terms(exc: ValidationFailed) -> ValidationFailed:
    """The command's error with its field paths named as this body names them."""
    if not isinstance(exc.details, list):
        return exc
    details = [
        {**d, "field": _BODY_FIELDS.get(str(d.get("field")), d.get("field"))}
        if isinstance(d, dict)
        else d
        for d in exc.details
    ]
    return ValidationFailed(exc.message, details=details, code=exc.code)


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(
            f"{field} is not valid base64",
            details=[{"code": "invalid_field", "field": field, "message": "not base64"}],
        ) from exc


def _node_json(node: Node) -> dict[str, Any]:
    return _jsonable(asdict(node))


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in values.items()}
