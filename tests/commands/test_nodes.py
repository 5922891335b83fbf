"""Node commands: the CLI and the admin API refuse the same node with the same error."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.commands import nodes
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
