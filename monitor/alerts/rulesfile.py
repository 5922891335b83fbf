"""The rules file: alert rules, webhook endpoints and retrain hooks in TOML, read into the specs
``edge-monitor alerts apply`` stores, with every problem of the file named by its field path.

A file holds any number of ``[[rule]]``, ``[[endpoint]]`` and ``[[hook]]`` sections
(``examples/alerts.toml`` shows each). Problems are reported all at once, each as
``FILE: rule[2] (site drift).params.metric: must be one of ...``: sections are numbered from 1
in the order the file lists them, and named when they have a name. The same section readers
check a rule, an endpoint or a hook that comes from the command line or the admin API.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.alerts import rules
from monitor.alerts.rules import Rule
from monitor.errors import ValidationFailed

Problems = list[tuple[str, str]]

#: Longest name of a rule, an endpoint or a hook (their columns' width).
MAX_NAME = 128
MAX_URL = 2000
MAX_DESCRIPTION = 1000
SECRET_PREFIX = "whsec_"
ENV_PREFIX = "env:"
#: Standard Webhooks secrets are 24 to 64 random bytes.
SECRET_BYTES = (24, 64)

HOOK_KINDS = ("webhook", "command", "python", "reference")
#: A hook's keys besides the ones every hook has, by kind (the rest of its ``config``).
HOOK_KEYS: dict[str, tuple[str, ...]] = {
    "webhook": ("url", "secret"),
    "command": ("argv", "env"),
    "python": ("entry_point",),
    "reference": (),
}
DEFAULT_HOOK_TIMEOUT = 3600.0
MAX_HOOK_TIMEOUT = 86400.0
DEFAULT_HOOK_COOLDOWN = 6 * 3600
MAX_COOLDOWN = 30 * 86400

_RULE_KEYS = (
    "name",
    "model",
    "kind",
    "scope",
    "scope_key",
    "group_by",
    "fire",
    "fire_m",
    "fire_n",
    "resolve",
    "resolve_m",
    "resolve_n",
    "cooldown",
    "cooldown_seconds",
    "severity",
    "endpoints",
    "hooks",
    "enabled",
    "params",
)
_ENDPOINT_KEYS = ("name", "url", "secret", "description", "enabled")
_HOOK_COMMON = (
    "name",
    "model",
    "kind",
    "timeout",
    "timeout_seconds",
    "cooldown",
    "cooldown_seconds",
    "enabled",
)
_SECTIONS = ("rule", "endpoint", "hook")

_M_OF_N = re.compile(r"^\s*(\d+)\s+of\s+(\d+)\s*$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


# --- What a file defines ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """A webhook endpoint as defined: its secret is None when it is to be generated (once, when
    the endpoint is first stored)."""

    name: str
    url: str
    secret: str | None = None
    description: str = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class HookSpec:
    """A retrain hook as defined: ``config`` holds its kind's keys (a webhook's url and secret,
    a command's argv and env, a Python entry point). A webhook hook's secret is absent from
    ``config`` when it is to be generated."""

    name: str
    model: str
    kind: str
    config: Mapping[str, Any] = field(default_factory=dict)
    timeout_seconds: float = DEFAULT_HOOK_TIMEOUT
    cooldown_seconds: int = DEFAULT_HOOK_COOLDOWN
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class RulesFile:
    """Everything one rules file defines (rules with ``source = "file"``)."""

    rules: tuple[Rule, ...] = ()
    endpoints: tuple[EndpointSpec, ...] = ()
    hooks: tuple[HookSpec, ...] = ()
    #: Where each section is in the file, by (kind, name): ``rule[2] (site drift)``.
    paths: Mapping[tuple[str, str], str] = field(default_factory=dict, compare=False)

    def path_of(self, kind: str, name: str) -> str:
        """The path problems of a section name it by (its first, if the name repeats)."""
        return self.paths.get((kind, name), f"{kind} ({name})")


class RulesFileInvalid(ValidationFailed):
    """A rules file with problems: the message lists each on its own line as
    ``FILE: PATH: MESSAGE``; ``problems`` holds them as (path, message)."""

    def __init__(self, source: str, problems: Problems) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {where}: {message}" for where, message in self.problems]
        super().__init__(
            "\n".join(lines),
            details=[
                {"code": "invalid_field", "field": where, "message": message}
                for where, message in self.problems
            ],
        )


# --- Reading a file ---------------------------------------------------------------------------


def load(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    known_endpoints: Collection[str] = (),
    known_hooks: Collection[str] = (),
) -> RulesFile:
    """Read and check the rules file at ``path``: RulesFileInvalid (every problem) otherwise.
    A file that cannot be read is one problem of the file itself."""
    parsed, problems = read_file(
        path, environ=environ, known_endpoints=known_endpoints, known_hooks=known_hooks
    )
    if problems:
        raise RulesFileInvalid(str(path), problems)
    return parsed


def read_file(
    path: str | Path,
    *,
    environ: Mapping[str, str] | None = None,
    known_endpoints: Collection[str] = (),
    known_hooks: Collection[str] = (),
) -> tuple[RulesFile, Problems]:
    """The sections of the rules file at ``path`` that are right, and the problems of the rest
    (so that a caller can add what it finds, such as the database's objections, and report every
    problem at once)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return RulesFile(), [("file", f"cannot be read: {reason}")]
    return read(text, environ=environ, known_endpoints=known_endpoints, known_hooks=known_hooks)


def parse(
    text: str,
    *,
    source: str = "alerts.toml",
    environ: Mapping[str, str] | None = None,
    known_endpoints: Collection[str] = (),
    known_hooks: Collection[str] = (),
) -> RulesFile:
    """The rules, endpoints and hooks of a rules file's text; RulesFileInvalid naming every
    problem (``source`` is the file's name in its lines)."""
    parsed, problems = read(
        text, environ=environ, known_endpoints=known_endpoints, known_hooks=known_hooks
    )
    if problems:
        raise RulesFileInvalid(source, problems)
    return parsed


def read(
    text: str,
    *,
    environ: Mapping[str, str] | None = None,
    known_endpoints: Collection[str] = (),
    known_hooks: Collection[str] = (),
) -> tuple[RulesFile, Problems]:
    """The sections of a rules file's text that are right, and the problems of the rest. A rule
    may name endpoints and hooks the file defines or ``known_endpoints`` / ``known_hooks``
    (stored ones defined elsewhere). ``env:VAR`` secrets are read from ``environ`` (default:
    the process environment)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return RulesFile(), [("file", f"not TOML: {exc}")]
    environ = os.environ if environ is None else environ
    problems: Problems = []
    for key in document:
        if key not in _SECTIONS:
            problems.append(
                (key, "is not a section of a rules file ([[rule]], [[endpoint]], [[hook]])")
            )
    sections: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for kind in _SECTIONS:
        found = document.get(kind, [])
        if not isinstance(found, list) or not all(isinstance(s, dict) for s in found):
            problems.append((kind, f"write each {kind} as a [[{kind}]] section"))
            found = []
        sections[kind] = [(_section_path(kind, i, s), s) for i, s in enumerate(found, 1)]

    endpoints: list[EndpointSpec] = []
    for path, section in sections["endpoint"]:
        found_problems = check_endpoint(section, path, environ=environ)
        problems += found_problems
        if not found_problems:
            endpoints.append(endpoint_from(section, environ=environ))
    hooks: list[HookSpec] = []
    for path, section in sections["hook"]:
        found_problems = check_hook(section, path, environ=environ)
        problems += found_problems
        if not found_problems:
            hooks.append(hook_from(section, environ=environ))
    endpoint_names = {_name_of(s) for _, s in sections["endpoint"]} | set(known_endpoints)
    hook_names = {_name_of(s) for _, s in sections["hook"]} | set(known_hooks)
    parsed_rules: list[Rule] = []
    for path, section in sections["rule"]:
        rule, found_problems = rule_from(section, path, source="file")
        for i, name in enumerate((rule.endpoints or ()) if rule is not None else ()):
            if name not in endpoint_names:
                found_problems.append((f"{path}.endpoints[{i}]", f"no endpoint named {name!r}"))
        for i, name in enumerate(rule.hooks if rule is not None else ()):
            if name not in hook_names:
                found_problems.append((f"{path}.hooks[{i}]", f"no hook named {name!r}"))
        problems += found_problems
        if rule is not None and not found_problems:
            parsed_rules.append(rule)
    for kind in _SECTIONS:
        problems += _duplicates(kind, sections[kind])
    paths = {
        (kind, named): where
        for kind in _SECTIONS
        for where, section in reversed(sections[kind])
        if (named := _name_of(section)) is not None
    }
    return RulesFile(tuple(parsed_rules), tuple(endpoints), tuple(hooks), paths), problems


def _section_path(kind: str, number: int, section: Mapping[str, Any]) -> str:
    name = section.get("name") if isinstance(section, Mapping) else None
    return f"{kind}[{number}] ({name})" if isinstance(name, str) and name else f"{kind}[{number}]"


def _name_of(section: Mapping[str, Any]) -> str | None:
    name = section.get("name")
    return name if isinstance(name, str) else None


def _duplicates(kind: str, sections: list[tuple[str, Mapping[str, Any]]]) -> Problems:
    first: dict[str, str] = {}
    problems: Problems = []
    for path, section in sections:
        name = _name_of(section)
        if name is None:
            continue
        if name in first:
            problems.append((f"{path}.name", f"{name!r} is defined twice (first at {first[name]})"))
        else:
            first[name] = path
    return problems


# --- Values shared by the file, the CLI and the API -------------------------------------------


def parse_m_of_n(text: str) -> tuple[int, int]:
    """``"2 of 3"`` as (2, 3); ValueError with the reason otherwise."""
    found = _M_OF_N.match(text)
    if found is None:
        raise ValueError(f'write it as "M of N", such as "2 of 3", not {text!r}')
    return int(found.group(1)), int(found.group(2))


def parse_duration(text: str) -> int:
    """``"30m"``, ``"2h"``, ``"1d"``, ``"90s"`` or ``"1h30m"`` (also ``"0"``) as seconds;
    ValueError with the reason otherwise."""
    cleaned = text.strip()
    if cleaned == "0":
        return 0
    found = _DURATION.match(cleaned)
    if not cleaned or found is None or not any(found.groups()):
        raise ValueError(
            f'write a duration such as "90s", "30m", "2h", "1d" or "1h30m", not {text!r}'
        )
    days, hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def duration_text(seconds: float) -> str:
    """Seconds as the largest units that say them exactly: ``1800`` -> ``"30m"``."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    if whole == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def check_secret(value: Any, where: str, *, environ: Mapping[str, str] | None = None) -> Problems:
    """Problems of a signing secret as written: ``whsec_`` and base64 of 24 to 64 bytes, or
    ``env:VAR`` naming a set environment variable that holds one."""
    if not isinstance(value, str):
        return [(where, 'must be a string: "whsec_..." or "env:VAR"')]
    if value.startswith(ENV_PREFIX):
        variable = value.removeprefix(ENV_PREFIX)
        if not _ENV_NAME.match(variable):
            return [(where, f"{variable!r} is not an environment variable's name")]
        environ = os.environ if environ is None else environ
        if variable not in environ:
            return [(where, f"the environment variable {variable} is not set")]
        problem = _secret_problem(environ[variable])
        return [(where, f"the environment variable {variable} {problem}")] if problem else []
    problem = _secret_problem(value)
    return [(where, f"the secret {problem}")] if problem else []


def _secret_problem(secret: str) -> str | None:
    if not secret.startswith(SECRET_PREFIX):
        return f'does not start with "{SECRET_PREFIX}"'
    try:
        raw = secret.removeprefix(SECRET_PREFIX)
        # Unpadded base64 is a secret too, as Standard Webhooks' libraries read it.
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f'is not "{SECRET_PREFIX}" followed by base64'
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        return f"holds {len(key)} bytes; a secret is {low} to {high} random bytes"
    return None


def resolve_secret(value: str, *, environ: Mapping[str, str] | None = None) -> str:
    """A checked secret as written, its ``env:VAR`` read from the environment."""
    if value.startswith(ENV_PREFIX):
        environ = os.environ if environ is None else environ
        return environ[value.removeprefix(ENV_PREFIX)]
    return value


def check_url(value: Any, where: str) -> Problems:
    """Problems of a webhook URL's form (http or https with a host); whether its address may be
    reached is judged when it is stored."""
    if not isinstance(value, str) or not value:
        return [(where, "must be a non-empty string")]
    if len(value) > MAX_URL:
        return [(where, f"must be at most {MAX_URL} characters")]
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError as exc:
        return [(where, f"is not a URL: {exc}")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [(where, "must be an http:// or https:// URL with a host")]
    if any(c.isspace() or not c.isprintable() for c in value):
        return [(where, "must not hold spaces or control characters")]
    return []


def _check_name(value: Any, where: str) -> Problems:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        return [(where, f"must be a string of 1 to {MAX_NAME} characters")]
    if not value.isprintable() or value != value.strip():
        return [(where, "must be printable, without leading or trailing spaces")]
    return []


def _unknown(mapping: Mapping[str, Any], allowed: Sequence[str], path: str) -> Problems:
    return [
        (f"{path}.{key}", f"is not a key here (known: {', '.join(allowed)})")
        for key in mapping
        if key not in allowed
    ]


def _is_bool(mapping: Mapping[str, Any], key: str, path: str) -> Problems:
    if key in mapping and not isinstance(mapping[key], bool):
        return [(f"{path}.{key}", "must be true or false")]
    return []


# --- [[endpoint]] -----------------------------------------------------------------------------


def check_endpoint(
    mapping: Mapping[str, Any], path: str = "endpoint", *, environ: Mapping[str, str] | None = None
) -> Problems:
    """Every problem of one endpoint's section (name, url, secret, description, enabled)."""
    problems = _unknown(mapping, _ENDPOINT_KEYS, path)
    problems += _check_name(mapping.get("name"), f"{path}.name")
    problems += check_url(mapping.get("url"), f"{path}.url")
    if mapping.get("secret") is not None:
        problems += check_secret(mapping["secret"], f"{path}.secret", environ=environ)
    description = mapping.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        problems.append((f"{path}.description", f"must be a string of at most {MAX_DESCRIPTION}"))
    problems += _is_bool(mapping, "enabled", path)
    return problems


def endpoint_from(
    mapping: Mapping[str, Any], *, environ: Mapping[str, str] | None = None
) -> EndpointSpec:
    """A checked endpoint section (``check_endpoint`` found nothing) as its spec."""
    secret = mapping.get("secret")
    return EndpointSpec(
        name=mapping["name"],
        url=mapping["url"],
        secret=None if secret is None else resolve_secret(secret, environ=environ),
        description=mapping.get("description", ""),
        enabled=mapping.get("enabled", True),
    )


# --- [[hook]] ---------------------------------------------------------------------------------


def check_hook(
    mapping: Mapping[str, Any], path: str = "hook", *, environ: Mapping[str, str] | None = None
) -> Problems:
    """Every problem of one hook's section: name, model, kind and the kind's keys, timeout
    (``timeout_seconds`` or ``timeout = "1h"``), cooldown, enabled."""
    given = mapping.get("kind")
    kind = given if isinstance(given, str) and given in HOOK_KINDS else None
    known = kind is not None
    allowed = _HOOK_COMMON + (
        HOOK_KEYS[kind] if kind is not None else tuple(k for ks in HOOK_KEYS.values() for k in ks)
    )
    problems = _unknown(mapping, allowed, path)
    problems += _check_name(mapping.get("name"), f"{path}.name")
    problems += _check_name(mapping.get("model"), f"{path}.model")
    if not known:
        problems.append((f"{path}.kind", f"must be one of {', '.join(HOOK_KINDS)}"))
    elif kind == "webhook":
        problems += check_url(mapping.get("url"), f"{path}.url")
        if mapping.get("secret") is not None:
            problems += check_secret(mapping["secret"], f"{path}.secret", environ=environ)
    elif kind == "command":
        argv = mapping.get("argv")
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) for a in argv)
            or not argv[0]
        ):
            problems.append(
                (f"{path}.argv", 'must be a non-empty list of strings: ["prog", "arg"]')
            )
        env = mapping.get("env", {})
        if not isinstance(env, Mapping) or not all(
            isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str) for k, v in env.items()
        ):
            problems.append((f"{path}.env", "must be a table of variable names to strings"))
    elif kind == "python":
        entry = mapping.get("entry_point")
        if not isinstance(entry, str) or not _ENTRY_POINT.match(entry):
            problems.append((f"{path}.entry_point", 'must be "package.module:function"'))
    problems += _seconds(
        mapping, "timeout", path, default=DEFAULT_HOOK_TIMEOUT, low=1, high=MAX_HOOK_TIMEOUT
    )[1]
    problems += _seconds(
        mapping, "cooldown", path, default=DEFAULT_HOOK_COOLDOWN, low=0, high=MAX_COOLDOWN,
        whole=True,
    )[1]  # fmt: skip
    problems += _is_bool(mapping, "enabled", path)
    return problems


def hook_from(mapping: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> HookSpec:
    """A checked hook section (``check_hook`` found nothing) as its spec."""
    kind = mapping["kind"]
    config: dict[str, Any] = {}
    for key in HOOK_KEYS[kind]:
        if mapping.get(key) is not None:
            config[key] = mapping[key]
    if kind == "command":
        config["argv"] = list(config["argv"])
        config["env"] = dict(config.get("env", {}))
    if "secret" in config:
        config["secret"] = resolve_secret(config["secret"], environ=environ)
    timeout = _seconds(mapping, "timeout", "hook", default=DEFAULT_HOOK_TIMEOUT, low=1,
                       high=MAX_HOOK_TIMEOUT)[0]  # fmt: skip
    cooldown = _seconds(mapping, "cooldown", "hook", default=DEFAULT_HOOK_COOLDOWN, low=0,
                        high=MAX_COOLDOWN, whole=True)[0]  # fmt: skip
    return HookSpec(
        name=mapping["name"],
        model=mapping["model"],
        kind=kind,
        config=config,
        timeout_seconds=float(timeout),
        cooldown_seconds=int(cooldown),
        enabled=mapping.get("enabled", True),
    )


def _seconds(
    mapping: Mapping[str, Any],
    key: str,
    path: str,
    *,
    default: float,
    low: float,
    high: float,
    whole: bool = False,
) -> tuple[float, Problems]:
    """``KEY_seconds`` (a number) or ``KEY`` (a duration such as "1h"), one of them, within
    [low, high]: (the seconds, problems)."""
    seconds_key = f"{key}_seconds"
    if key in mapping and seconds_key in mapping:
        return default, [(f"{path}.{key}", f"give {key} or {seconds_key}, not both")]
    if key in mapping:
        text = mapping[key]
        if not isinstance(text, str):
            return default, [
                (f"{path}.{key}", f'must be a duration such as "1h" (or use {seconds_key})')
            ]
        try:
            value: float = parse_duration(text)
        except ValueError as exc:
            return default, [(f"{path}.{key}", str(exc))]
        where = f"{path}.{key}"
    elif seconds_key in mapping:
        value = mapping[seconds_key]
        where = f"{path}.{seconds_key}"
        kinds = int if whole else int | float
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            what = "a whole number of seconds" if whole else "a number of seconds"
            return default, [(where, f"must be {what}")]
    else:
        return default, []
    if not low <= value <= high:
        return default, [(where, f"must be from {duration_text(low)} to {duration_text(high)}")]
    return value, []


# --- [[rule]] ---------------------------------------------------------------------------------


def rule_from(
    mapping: Mapping[str, Any], path: str = "rule", *, source: str = "api"
) -> tuple[Rule | None, Problems]:
    """One rule's section (or the admin API's body, or the CLI's flags gathered) as a Rule, and
    every problem of it: unknown keys, wrong types, then ``rules.check``'s. The Rule is None
    when its fields cannot even be gathered."""
    problems = _unknown(mapping, _RULE_KEYS, path)

    def text(key: str, *, required: bool = False) -> str | None:
        value = mapping.get(key)
        if value is None:
            if required:
                problems.append((f"{path}.{key}", "is required"))
            return None
        if not isinstance(value, str):
            problems.append((f"{path}.{key}", "must be a string"))
            return None
        return value

    def names(key: str) -> tuple[str, ...] | None:
        value = mapping.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            problems.append((f"{path}.{key}", "must be a list of names"))
            return None
        twice = sorted({v for v in value if value.count(v) > 1})
        if twice:
            problems.append((f"{path}.{key}", f"names {', '.join(twice)} more than once"))
        return tuple(value)

    name = text("name", required=True)
    kind = text("kind", required=True)
    model = text("model")
    scope = text("scope")
    scope_key = text("scope_key")
    group_by = text("group_by")
    severity = text("severity")
    fire = _m_of_n(mapping, "fire", path, problems)
    resolve = _m_of_n(mapping, "resolve", path, problems)
    cooldown, found = _seconds(
        mapping, "cooldown", path, default=0, low=0, high=MAX_COOLDOWN, whole=True
    )
    problems += found
    endpoints = names("endpoints")
    hooks = names("hooks")
    problems += _is_bool(mapping, "enabled", path)
    params = mapping.get("params", {})
    if not isinstance(params, Mapping):
        problems.append((f"{path}.params", "must be a table of the kind's parameters"))
        params = {}
    if name is None or kind is None:
        return None, problems
    rule = Rule(
        name=name,
        kind=kind,
        model=model,
        params=dict(params),
        scope=scope if scope is not None else rules.FLEET,
        scope_key=scope_key,
        group_by=group_by,
        fire_m=fire[0],
        fire_n=fire[1],
        resolve_m=resolve[0],
        resolve_n=resolve[1],
        cooldown_seconds=int(cooldown),
        severity=severity if severity is not None else "warning",
        endpoints=endpoints,
        hooks=hooks or (),
        enabled=bool(mapping.get("enabled", True)),
        source=source,
    )
    reported = {where for where, _ in problems}
    for where, message in rules.check(rule, path):
        # A value refused for its type above is not refused again for its value.
        if where not in reported:
            problems.append((where, message))
    return rule, problems


def _m_of_n(mapping: Mapping[str, Any], key: str, path: str, problems: Problems) -> tuple[int, int]:
    m_key, n_key = f"{key}_m", f"{key}_n"
    if key in mapping:
        if m_key in mapping or n_key in mapping:
            problems.append((f"{path}.{key}", f"give {key} or {m_key}/{n_key}, not both"))
            return 1, 1
        value = mapping[key]
        if not isinstance(value, str):
            problems.append((f"{path}.{key}", 'must be a string such as "2 of 3"'))
            return 1, 1
        try:
            return parse_m_of_n(value)
        except ValueError as exc:
            problems.append((f"{path}.{key}", str(exc)))
            return 1, 1
    m, n = mapping.get(m_key, 1), mapping.get(n_key, 1)
    for name, value in ((m_key, m), (n_key, n)):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((f"{path}.{name}", "must be a whole number"))
            return 1, 1
    return m, n


def rule_fields(rule: Rule) -> dict[str, Any]:
    """A rule as the fields a rules file (or the admin API's body) writes, ``fire`` and
    ``resolve`` as "M of N" and the cooldown as a duration: ``rule_from`` reads them back."""
    fields: dict[str, Any] = {"name": rule.name, "kind": rule.kind}
    if rule.model is not None:
        fields["model"] = rule.model
    fields["scope"] = rule.scope
    if rule.scope_key is not None:
        fields["scope_key"] = rule.scope_key
    if rule.group_by is not None:
        fields["group_by"] = rule.group_by
    fields["fire"] = f"{rule.fire_m} of {rule.fire_n}"
    fields["resolve"] = f"{rule.resolve_m} of {rule.resolve_n}"
    fields["cooldown"] = duration_text(rule.cooldown_seconds)
    fields["severity"] = rule.severity
    if rule.endpoints is not None:
        fields["endpoints"] = list(rule.endpoints)
    fields["hooks"] = list(rule.hooks)
    fields["enabled"] = rule.enabled
    fields["params"] = dict(rule.params)
    return fields
