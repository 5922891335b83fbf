"""Node commands: the CLI and the admin API refuse the same node with the same error."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.commands import models, nodes
from monitor.errors import ValidationFailed
from monitor.storage.nodes import node_for_token
from tests.commands.conftest import Both

REFUSED_NODES = {
    "a name that cannot be in a URL": (
        ["bad name!"],
        {"name": "bad name!"},
        (422, "validation_failed", "name"),
    ),
    "a name too long": (["n" * 129], {"name": "n" * 129}, (422, "validation_failed", "name")),
    "a group too long": (
        ["cam-2", "--group", "g" * 129],
        {"name": "cam-2", "group": "g" * 129},
        (422, "validation_failed", "group"),
    ),
    "an empty site": (
        ["cam-2", "--site", ""],
        {"name": "cam-2", "site": ""},
        (422, "validation_failed", "site"),
    ),
    "a name already taken": (["cam-1"], {"name": "cam-1"}, (409, "node_exists", None)),
    "an unknown model": (
        ["cam-2", "--model", "ghost"],
        {"name": "cam-2", "models": ["ghost"]},
        (404, "unknown_model", None),
    ),
    "a labeller with models": (
        ["erp", "--labeller", "--model", "m"],
        {"name": "erp", "role": "labeller", "models": ["m"]},
        (422, "validation_failed", "models"),
    ),
}


@pytest.mark.parametrize(
    ("cli_args", "body", "expected"), REFUSED_NODES.values(), ids=REFUSED_NODES
)
def test_a_bad_node_is_refused_alike_by_the_cli_and_the_api(
    both: Both,
    engine: Engine,
    cli_args: list[str],
    body: dict[str, str],
    expected: tuple[int, str, str | None],
) -> None:
    nodes.add_node(engine, "cam-1")
    models.add_model(engine, "m")

    said = both.cli_error("nodes", "add", *cli_args)
    answer = both.api_refusal("POST", "/nodes", body)

    assert (answer.status, answer.code, answer.field) == expected
    assert said == answer.message


def test_revoking_an_unknown_node_is_refused_alike(both: Both) -> None:
    said = both.cli_error("nodes", "revoke", "ghost")
    answer = both.api_refusal("POST", "/nodes/ghost/revoke")

    assert (answer.status, answer.code) == (404, "unknown_node")
    assert said == answer.message


def test_a_node_gets_a_token_once_and_revoking_it_bites_at_once(engine: Engine) -> None:
    added = nodes.add_node(engine, "cam-1", group="north", site="plant-1", tags={"hw": "pi5"})

    assert added.token.startswith(wire.NODE_TOKEN_PREFIX)
    assert (added.node.group_name, added.node.site, added.node.tags) == (
        "north",
        "plant-1",
        {"hw": "pi5"},
    )
    with engine.connect() as conn:
        assert node_for_token(conn, added.token) == added.node
    revoked = nodes.revoke_node(engine, "cam-1")

    assert revoked.revoked_at is not None
    with engine.connect() as conn:
        assert node_for_token(conn, added.token) is None
    assert [n.name for n in nodes.list_nodes(engine)] == ["cam-1"]


def test_a_tag_needs_a_key(engine: Engine) -> None:
    with pytest.raises(ValidationFailed) as refused:
        nodes.add_node(engine, "cam-1", tags={"": "x"})

    assert refused.value.details[0]["field"] == "tags."
    assert nodes.list_nodes(engine) == []


def test_granting_and_withdrawing_a_model_alike_through_the_cli_and_the_api(
    both: Both, engine: Engine
) -> None:
    models.add_model(engine, "m")
    models.add_model(engine, "other")
    assert both.cli("nodes", "add", "cam-1", "--model", "m") == 0
    both.api("POST", "/nodes", {"name": "cam-2", "models": ["m"]}).raise_for_status()

    assert both.cli("nodes", "grant", "cam-1", "other") == 0
    both.api("PUT", "/nodes/cam-2/models/other").raise_for_status()
    granted = {n["name"]: n["models"] for n in both.api("GET", "/nodes").json()["nodes"]}
    assert granted == {"cam-1": ["m", "other"], "cam-2": ["m", "other"]}
    both.capsys.readouterr()
    assert both.cli("nodes", "list") == 0
    listing = both.capsys.readouterr().out.splitlines()
    assert listing[0].split()[-1] == "MODELS"
    assert [line.split()[-1] for line in listing[1:]] == ["m,other", "m,other"]

    assert both.cli("nodes", "withdraw", "cam-1", "m") == 0
    assert both.api("DELETE", "/nodes/cam-2/models/m").json()["withdrawn"] is True
    assert nodes.node_models(engine) == {n.id: ["other"] for n in nodes.list_nodes(engine)}


def test_granting_a_model_to_an_unknown_node_is_refused_alike(both: Both, engine: Engine) -> None:
    models.add_model(engine, "m")

    said = both.cli_error("nodes", "grant", "ghost", "m")
    answer = both.api_refusal("PUT", "/nodes/ghost/models/m")

    assert (answer.status, answer.code) == (404, "unknown_node")
    assert said == answer.message


def test_a_labeller_is_registered_with_its_role_and_lists_as_one(both: Both) -> None:
    assert both.cli("nodes", "add", "erp", "--labeller") == 0
    both.capsys.readouterr()
    both.cli("nodes", "list")

    assert both.capsys.readouterr().out.splitlines()[1].split()[-1] == "(labeller)"
    assert both.api("GET", "/nodes").json()["nodes"][0]["role"] == "labeller"
