"""The rules file: TOML rules, endpoints and hooks read into specs, every problem of a file
reported at once by its field path, and the example file kept parseable."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.alerts import rules
from monitor.alerts.rules import Rule
from monitor.alerts.rulesfile import (
    DEFAULT_HOOK_COOLDOWN,
    DEFAULT_HOOK_TIMEOUT,
    EndpointSpec,
    RulesFileInvalid,
    check_endpoint,
    check_hook,
    duration_text,
    load,
    parse,
    parse_duration,
    parse_m_of_n,
    rule_fields,
    rule_from,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "alerts.toml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def problems_of(text: str, **kwargs: object) -> list[tuple[str, str]]:
    with pytest.raises(RulesFileInvalid) as refused:
        parse(text, **kwargs)  # type: ignore[arg-type]
    return refused.value.problems


def test_the_example_file_defines_every_kind_an_endpoint_and_hooks() -> None:
    parsed = load(EXAMPLE)

    assert {r.kind for r in parsed.rules} == set(rules.KINDS)
    assert all(r.source == "file" for r in parsed.rules)
    assert [e.name for e in parsed.endpoints] == ["ops-receiver"]
    assert {h.kind for h in parsed.hooks} == {"reference", "command"}
    site = next(r for r in parsed.rules if r.name == "site drift")
    assert (site.fire_m, site.fire_n, site.resolve_m, site.resolve_n) == (2, 3, 3, 3)
    assert site.cooldown_seconds == 1800
    assert site.endpoints == ("ops-receiver",)


def test_a_rule_reads_fire_resolve_and_cooldown_in_words() -> None:
    parsed = parse(
        """
        [[rule]]
        name = "acc"
        model = "m"
        kind = "performance"
        fire = "2 of 3"
        resolve = "3 of 3"
        cooldown = "1h30m"
        severity = "critical"
        hooks = []
        [rule.params]
        metric = "accuracy"
        below = 0.9
        """
    )

    assert parsed.rules == (
        Rule(
            name="acc",
            kind="performance",
            model="m",
            params={"metric": "accuracy", "below": 0.9},
            fire_m=2,
            fire_n=3,
            resolve_m=3,
            resolve_n=3,
            cooldown_seconds=5400,
            severity="critical",
            source="file",
        ),
    )
    assert parsed.rules[0].endpoints is None  # absent: every enabled endpoint


def test_fire_m_and_fire_n_and_cooldown_seconds_say_the_same() -> None:
    words = parse('[[rule]]\nname="a"\nmodel="m"\nkind="scope_drift"\nfire="2 of 4"\ncooldown="2h"')
    numbers = parse(
        '[[rule]]\nname="a"\nmodel="m"\nkind="scope_drift"\nfire_m=2\nfire_n=4\n'
        "cooldown_seconds=7200"
    )

    assert words == numbers


def test_every_problem_of_a_file_is_reported_at_once_by_its_path() -> None:
    text = """
    [[rule]]
    name = "fine"
    model = "m"
    kind = "scope_drift"

    [[rule]]
    name = "site drift"
    model = "m"
    kind = "performance"
    fire = "3 of 2"
    colour = "red"
    params = { metric = "accuracy_score", below = 0.9 }

    [[rule]]
    kind = "scope_drift"
    model = "m"
    """

    with pytest.raises(RulesFileInvalid) as refused:
        parse(text, source="alerts.toml")

    lines = refused.value.message.splitlines()
    assert "alerts.toml: rule[2] (site drift).colour: is not a key here" in lines[0]
    assert (
        "alerts.toml: rule[2] (site drift).fire_m: must be a whole number from 1 to fire_n (2)"
        in lines
    )
    assert any(
        line.startswith("alerts.toml: rule[2] (site drift).params.metric: must be one of accuracy")
        for line in lines
    )
    assert "alerts.toml: rule[3].name: is required" in lines
    assert len(lines) == 4
    fields = [d["field"] for d in refused.value.details]
    assert fields[0] == "rule[2] (site drift).colour"


def test_a_value_of_the_wrong_type_is_named_once() -> None:
    problems = problems_of(
        '[[rule]]\nname="a"\nmodel="m"\nkind="scope_drift"\nscope=3\nfire=2\nenabled="yes"\n'
        'cooldown=30\nendpoints="ops"'
    )

    assert dict(problems) == {
        "rule[1] (a).scope": "must be a string",
        "rule[1] (a).fire": 'must be a string such as "2 of 3"',
        "rule[1] (a).cooldown": 'must be a duration such as "1h" (or use cooldown_seconds)',
        "rule[1] (a).endpoints": "must be a list of names",
        "rule[1] (a).enabled": "must be true or false",
    }


def test_fire_in_words_and_in_numbers_at_once_is_refused() -> None:
    problems = problems_of(
        '[[rule]]\nname="a"\nmodel="m"\nkind="scope_drift"\nfire="1 of 1"\nfire_m=1'
    )

    assert problems == [("rule[1] (a).fire", "give fire or fire_m/fire_n, not both")]


def test_a_rule_may_name_only_endpoints_and_hooks_the_file_or_the_database_has() -> None:
    text = f"""
    [[endpoint]]
    name = "ops"
    url = "https://example.com/hook"
    secret = "{SECRET}"

    [[rule]]
    name = "a"
    model = "m"
    kind = "scope_drift"
    endpoints = ["ops", "pager", "stored"]
    hooks = ["retrain"]
    """

    assert problems_of(text, known_endpoints={"stored"}) == [
        ("rule[1] (a).endpoints[1]", "no endpoint named 'pager'"),
        ("rule[1] (a).hooks[0]", "no hook named 'retrain'"),
    ]
    assert parse(text, known_endpoints={"stored", "pager"}, known_hooks={"retrain"}).rules


def test_a_name_defined_twice_is_refused_where_it_repeats() -> None:
    text = """
    [[rule]]
    name = "a"
    model = "m"
    kind = "scope_drift"
    [[rule]]
    name = "a"
    model = "m"
    kind = "prediction_drift"
    """

    assert problems_of(text) == [
        ("rule[2] (a).name", "'a' is defined twice (first at rule[1] (a))")
    ]


def test_a_file_that_is_not_toml_or_has_unknown_sections_says_so() -> None:
    assert problems_of("[[rule]\nname=")[0][0] == "file"
    assert problems_of('[rule]\nname="a"\n[[alert]]\nx=1') == [
        ("alert", "is not a section of a rules file ([[rule]], [[endpoint]], [[hook]])"),
        ("rule", "write each rule as a [[rule]] section"),
    ]


def test_a_missing_file_is_one_problem_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RulesFileInvalid) as refused:
        load(tmp_path / "nope.toml")

    assert refused.value.message.startswith(f"{tmp_path / 'nope.toml'}: file: cannot be read")


# --- endpoints --------------------------------------------------------------------------------


def test_an_endpoint_secret_may_come_from_the_environment_or_be_generated_later() -> None:
    text = """
    [[endpoint]]
    name = "from-env"
    url = "https://example.com/a"
    secret = "env:OPS_SECRET"
    [[endpoint]]
    name = "generated"
    url = "http://example.com:8080/b"
    description = "later"
    enabled = false
    """

    parsed = parse(text, environ={"OPS_SECRET": SECRET})

    assert parsed.endpoints == (
        EndpointSpec("from-env", "https://example.com/a", SECRET),
        EndpointSpec("generated", "http://example.com:8080/b", None, "later", enabled=False),
    )


def test_an_unset_environment_variable_is_named() -> None:
    problems = problems_of(
        '[[endpoint]]\nname="e"\nurl="https://example.com"\nsecret="env:OPS_SECRET"',
        environ={},
    )

    assert problems == [
        ("endpoint[1] (e).secret", "the environment variable OPS_SECRET is not set")
    ]


@pytest.mark.parametrize(
    ("mapping", "field", "message"),
    [
        ({"url": "ftp://example.com"}, "url", "must be an http:// or https:// URL with a host"),
        ({"url": "https://"}, "url", "must be an http:// or https:// URL with a host"),
        ({"url": "https://example.com:99999/"}, "url", "is not a URL: Port out of range 0-65535"),
        ({"secret": "s3cret"}, "secret", 'the secret does not start with "whsec_"'),
        ({"secret": "whsec_!!"}, "secret", 'the secret is not "whsec_" followed by base64'),
        (
            {"secret": "whsec_c2hvcnQ="},
            "secret",
            "the secret holds 5 bytes; a secret is 24 to 64 random bytes",
        ),
        ({"secret": "env:1X"}, "secret", "'1X' is not an environment variable's name"),
        ({"enabled": 1}, "enabled", "must be true or false"),
        (
            {"colour": "red"},
            "colour",
            "is not a key here (known: name, url, secret, description, enabled)",
        ),
        ({"name": ""}, "name", "must be a string of 1 to 128 characters"),
    ],
)
def test_check_endpoint_names_each_problem(
    mapping: dict[str, object], field: str, message: str
) -> None:
    section = {"name": "e", "url": "https://example.com/x", **mapping}

    assert check_endpoint(section, "endpoint") == [(f"endpoint.{field}", message)]


# --- hooks ------------------------------------------------------------------------------------


def test_a_hook_takes_its_kind_keys_and_defaults() -> None:
    text = f"""
    [[hook]]
    name = "ext"
    model = "m"
    kind = "webhook"
    url = "https://ci.example.com/retrain"
    secret = "{SECRET}"
    timeout = "2h"
    cooldown = "1d"
    [[hook]]
    name = "py"
    model = "m"
    kind = "python"
    entry_point = "pipelines.retrain:run"
    [[hook]]
    name = "cmd"
    model = "m"
    kind = "command"
    argv = ["retrain.sh"]
    """

    ext, py, cmd = parse(text).hooks

    assert ext.config == {"url": "https://ci.example.com/retrain", "secret": SECRET}
    assert (ext.timeout_seconds, ext.cooldown_seconds) == (7200.0, 86400)
    assert py.config == {"entry_point": "pipelines.retrain:run"}
    assert (py.timeout_seconds, py.cooldown_seconds) == (
        DEFAULT_HOOK_TIMEOUT,
        DEFAULT_HOOK_COOLDOWN,
    )
    assert cmd.config == {"argv": ["retrain.sh"], "env": {}}


ARGV = 'must be a non-empty list of strings: ["prog", "arg"]'


@pytest.mark.parametrize(
    ("mapping", "field", "message"),
    [
        ({"kind": "shell"}, "kind", "must be one of webhook, command, python, reference"),
        ({"kind": "command", "argv": []}, "argv", ARGV),
        ({"kind": "command", "argv": ["a", 1]}, "argv", ARGV),
        (
            {"kind": "command", "argv": ["a"], "env": {"X": 1}},
            "env",
            "must be a table of variable names to strings",
        ),
        ({"kind": "python", "entry_point": "pkg.mod"}, "entry_point", "must be"),
        ({"kind": "webhook"}, "url", "must be a non-empty string"),
        ({"kind": "reference", "url": "https://x.example"}, "url", "is not a key here (known:"),
        ({"kind": "reference", "timeout_seconds": 0}, "timeout_seconds", "must be from 1s to 1d"),
        ({"kind": "reference", "timeout": "2d"}, "timeout", "must be from 1s to 1d"),
        (
            {"kind": "reference", "timeout": "1h", "timeout_seconds": 10},
            "timeout",
            "give timeout or timeout_seconds, not both",
        ),
        (
            {"kind": "reference", "cooldown_seconds": 1.5},
            "cooldown_seconds",
            "must be a whole number of seconds",
        ),
        ({"kind": "reference", "model": None}, "model", "must be a string of 1 to 128"),
    ],
)
def test_check_hook_names_each_problem(
    mapping: dict[str, object], field: str, message: str
) -> None:
    section = {"name": "h", "model": "m", **mapping}

    found = check_hook({k: v for k, v in section.items() if v is not None}, "hook")

    assert len(found) == 1
    assert found[0][0] == f"hook.{field}"
    assert found[0][1].startswith(message)


# --- values -----------------------------------------------------------------------------------


def test_durations_and_m_of_n_read_and_write_alike() -> None:
    for text, seconds in (("0", 0), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400),
                          ("1h30m", 5400), ("1d2h3m4s", 93784)):  # fmt: skip
        assert parse_duration(text) == seconds
        assert parse_duration(duration_text(seconds)) == seconds
    for bad in ("", "30", "1x", "m", "-1h", "1.5h"):
        with pytest.raises(ValueError, match="write a duration"):
            parse_duration(bad)
    assert parse_m_of_n("2 of 3") == (2, 3)
    with pytest.raises(ValueError, match='"M of N"'):
        parse_m_of_n("2/3")


def test_a_rule_written_as_fields_reads_back_the_same() -> None:
    for rule in load(EXAMPLE).rules:
        again, problems = rule_from(rule_fields(rule), source="file")

        assert problems == []
        assert again == rule
