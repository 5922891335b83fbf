"""Window policy commands: the CLI (`models window`) and the admin API set and show the same
policy, refuse the same values naming the same field, and a model that does not exist is not
found by either."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from monitor.commands import windows
from monitor.errors import NotFound, ValidationFailed
from monitor.storage.policies import Calendar, Fixed, Rows
from tests.commands.conftest import CLI_ERROR, MODEL, Both

PATH = f"/models/{MODEL}/window"


def shown(both: Both) -> str:
    assert both.cli("models", "window", MODEL) == 0
    return both.capsys.readouterr().out.strip()


def test_a_model_without_a_policy_has_the_settings_default(both: Both, pump: str) -> None:
    assert shown(both) == f"model {MODEL}: every 15 min (the default), from the first record"
    answer = both.api("GET", PATH)
    assert answer.status_code == 200
    assert answer.json() == {
        "model": MODEL,
        "kind": "fixed",
        "description": "every 15 min (the default)",
        "default": True,
        "since": None,
        "policy": {"kind": "fixed", "minutes": 15},
    }


def test_the_cli_sets_what_the_api_reads_and_back(both: Both, pump: str) -> None:
    assert (
        both.cli("models", "window", MODEL, "--calendar", "month", "--timezone", "Europe/Berlin")
        == 0
    )
    printed = both.capsys.readouterr().out.strip()
    read = both.api("GET", PATH).json()

    put = both.api("PUT", PATH, {"rows": 5000})
    after_put = shown(both)

    assert printed == f"model {MODEL}: calendar month in Europe/Berlin, from the first record"
    assert (read["description"], read["policy"]) == (
        "calendar month in Europe/Berlin",
        {"kind": "calendar", "unit": "month", "timezone": "Europe/Berlin"},
    )
    assert put.status_code == 200
    assert put.json()["description"] == "5000 rows"
    assert after_put == f"model {MODEL}: 5000 rows, from the first record"


def test_every_form_of_the_cli_and_the_api(both: Both, pump: str) -> None:
    cases = [
        (["--every", "1d12h"], {"every": "1d12h"}, "every 1 d 12 h"),
        (
            ["--every", "7d", "--origin", "2026-01-05T00:00:00+01:00"],
            {"every": "7d", "origin": "2026-01-05T00:00:00+01:00"},
            "every 7 d from 2026-01-05T00:00:00+01:00",
        ),
        (["--calendar", "week"], {"calendar": "week"}, "calendar week in UTC"),
        (["--rows", "250"], {"rows": 250}, "250 rows"),
        (["--default"], {"default": True}, "every 15 min (the default)"),
    ]
    for flags, body, description in cases:
        assert both.cli("models", "window", MODEL, *flags) == 0
        printed = both.capsys.readouterr().out
        answer = both.api("PUT", PATH, body)
        assert printed.startswith(f"model {MODEL}: {description},"), flags
        assert answer.json()["description"] == description, body


REFUSED = {
    "no time": (["--every", "0m"], {"every": "0m"}, "every"),
    "more than 31 days": (["--every", "32d"], {"every": "32d"}, "every"),
    "not a length": (["--every", "soon"], {"every": "soon"}, "every"),
    "an unknown zone": (
        ["--calendar", "day", "--timezone", "Mars/Olympus"],
        {"calendar": "day", "timezone": "Mars/Olympus"},
        "timezone",
    ),
    "no rows": (["--rows", "0"], {"rows": 0}, "rows"),
    "too many rows": (["--rows", "1000001"], {"rows": 1_000_001}, "rows"),
    "an origin without its offset": (
        ["--every", "1d", "--origin", "2026-01-05T00:00:00"],
        {"every": "1d", "origin": "2026-01-05T00:00:00"},
        "origin",
    ),
    "an origin of calendar windows": (
        ["--calendar", "day", "--origin", "2026-01-05T00:00:00+01:00"],
        {"calendar": "day", "origin": "2026-01-05T00:00:00+01:00"},
        "origin",
    ),
    "a time zone of fixed windows": (
        ["--every", "1h", "--timezone", "Europe/Berlin"],
        {"every": "1h", "timezone": "Europe/Berlin"},
        "timezone",
    ),
}


@pytest.mark.parametrize(("flags", "body", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_bad_values_are_refused_by_both_naming_the_field(
    both: Both, pump: str, flags: list[str], body: dict, field: str
) -> None:
    code = both.cli("models", "window", MODEL, *flags)
    lines = both.capsys.readouterr().err.strip().splitlines()
    refused = both.api_refusal("PUT", PATH, body)

    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(f"{CLI_ERROR}--{field}: "), lines
    assert (refused.status, refused.code, refused.field) == (422, "invalid_value", field)
    assert refused.message == lines[0].removeprefix(f"{CLI_ERROR}--")
    assert shown(both).startswith(f"model {MODEL}: every 15 min (the default)")


def test_two_policies_at_once_are_refused(both: Both, pump: str) -> None:
    refused = both.api_refusal("PUT", PATH, {"every": "15m", "rows": 10})
    empty = both.api_refusal("PUT", PATH, {})
    cli = both.cli("models", "window", MODEL, "--every", "15m", "--rows", "10")

    assert (refused.status, refused.code, refused.field) == (422, "invalid_value", "rows")
    assert "exactly one of every, calendar, rows or default" in refused.message
    assert (empty.status, empty.code) == (422, "invalid_value")
    assert cli == 2


def test_an_unknown_model_is_not_found_by_either(both: Both) -> None:
    message = both.cli_error("models", "window", "nope", "--every", "1h")
    refused = both.api_refusal("PUT", "/models/nope/window", {"every": "1h"})
    read = both.api_refusal("GET", "/models/nope/window")

    assert message == "no model named 'nope'"
    assert (refused.status, refused.code) == (404, "unknown_model")
    assert (read.status, read.code) == (404, "unknown_model")


def test_the_command_sets_the_policy_from_the_end_of_the_last_analysed_window(
    engine: Engine, pump: str
) -> None:
    # Nothing analysed yet: the policy applies from the first record; setting it again is a
    # no-op, and the default comes back as no policy at all.
    view = windows.set_window_policy(engine, MODEL, Calendar("day"), timedelta(minutes=15))
    again = windows.set_window_policy(engine, MODEL, Calendar("day"), timedelta(minutes=15))
    reset = windows.set_window_policy(engine, MODEL, None, timedelta(minutes=30))

    assert (view.policy, view.default, view.since) == (Calendar("day"), False, None)
    assert again == view
    assert (reset.policy, reset.default) == (Fixed(timedelta(minutes=30)), True)
    with pytest.raises(NotFound):
        windows.window_policy(engine, "nope", timedelta(minutes=15))


def test_the_request_takes_exactly_one_policy() -> None:
    assert windows.policy_from_request(rows=5) == Rows(5)
    assert windows.policy_from_request(default=True) is None
    with pytest.raises(ValidationFailed):
        windows.policy_from_request()
