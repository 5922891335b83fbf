"""Alert rules: what is judged, where, and how often it must hold before an alert fires or
resolves. One ``Rule`` is one row of ``alert_rules``; ``check`` validates one before it is
stored, naming each problem by its field path, whatever it came from (the rules file, the
command line or the admin API)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# --- What a rule judges -----------------------------------------------------------------------

#: A scope's verdict: at least one feature drifted after false-discovery control.
SCOPE_DRIFT = "scope_drift"
#: One named feature drifted (``params.feature``).
FEATURE_DRIFT = "feature_drift"
#: The share of a scope's drifted features is at least ``params.min_share``.
SHARE_DRIFTED = "share_drifted"
#: The prediction or a class probability drifted.
PREDICTION_DRIFT = "prediction_drift"
#: A performance figure (``params.metric``) is below ``params.below`` (above ``params.above``
#: for errors such as mae, rmse), judged with its uncertainty. Where labels leave the realised
#: figure unknown, the window's estimate of it (with its band and trust verdict) is judged
#: instead, unless ``params.estimated`` is false.
PERFORMANCE = "performance"
#: A performance figure is worse than the version's reference figure by more than
#: ``params.drop``, judged with its uncertainty (and on the estimate, as ``performance``).
PERFORMANCE_DROP = "performance_drop"
#: A data-quality figure (``params.figure``: missing_share, new_category_share,
#: out_of_range_share) is above ``params.above``, for ``params.feature`` or any feature.
QUALITY = "quality"
#: Node rules, judged from node health on the worker's clock rather than per window.
NODE_OFFLINE = "node_offline"  # no heartbeat for ``params.for_seconds``
CLOCK_SKEW = "clock_skew"  # the node sent record times its clock cannot have been right about
SDK_DROPS = "sdk_drops"  # records lost (not sampled away) since the last check: > params.above
LATENCY_P95 = "latency_p95"  # the runtime's p95 latency above ``params.above_ms``

WINDOW_KINDS = (
    SCOPE_DRIFT,
    FEATURE_DRIFT,
    SHARE_DRIFTED,
    PREDICTION_DRIFT,
    PERFORMANCE,
    PERFORMANCE_DROP,
    QUALITY,
)
NODE_KINDS = (NODE_OFFLINE, CLOCK_SKEW, SDK_DROPS, LATENCY_P95)
KINDS = WINDOW_KINDS + NODE_KINDS

#: Performance figures a rule may name; the first group is better high, the second better low.
HIGHER_IS_BETTER = ("accuracy", "precision", "recall", "f1", "roc_auc")
LOWER_IS_BETTER = ("mae", "rmse")
QUALITY_FIGURES = ("missing_share", "new_category_share", "out_of_range_share")

# --- Where ------------------------------------------------------------------------------------

FLEET = "fleet"
SITE = "site"
GROUP = "group"
NODE = "node"
#: Every node on its own (node rules always judge nodes one by one).
EACH_NODE = "each_node"
SCOPES = (FLEET, SITE, GROUP, NODE, EACH_NODE)

#: How subjects in trouble fold into alerts: one alert per subject (None), per site, per group,
#: or one for the whole rule.
GROUP_BY = (None, SITE, GROUP, "rule")

SEVERITIES = ("info", "warning", "critical")

#: The confidence of the interval a performance figure is judged with.
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule. ``fire_m`` of the last ``fire_n`` judged windows must breach before it
    fires for a subject, and ``resolve_m`` of the last ``resolve_n`` must be clear before that
    subject recovers; an alert resolves when its last subject recovers, and the same alert
    (rule and group) does not fire again within ``cooldown_seconds`` of resolving."""

    name: str
    kind: str
    #: The model it watches (by name); None: every model (node rules).
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    scope: str = FLEET
    #: The site, group or node a scope names; None: each of them (``scope = "site"``: every
    #: site on its own).
    scope_key: str | None = None
    group_by: str | None = None
    fire_m: int = 1
    fire_n: int = 1
    resolve_m: int = 1
    resolve_n: int = 1
    cooldown_seconds: int = 0
    severity: str = "warning"
    #: Webhook endpoints to notify, by name; None: every enabled endpoint.
    endpoints: tuple[str, ...] | None = None
    #: Retrain hooks to start when it fires, by name.
    hooks: tuple[str, ...] = ()
    enabled: bool = True
    #: Where it was defined: "file", "cli" or "api".
    source: str = "api"
    #: The row id once stored.
    id: int | None = None

    @property
    def is_node_rule(self) -> bool:
        return self.kind in NODE_KINDS


def check(rule: Rule, path: str = "rule") -> list[tuple[str, str]]:
    """Every problem of ``rule`` as (field path, message); empty when it can be stored."""
    problems: list[tuple[str, str]] = []

    def bad(name: str, message: str) -> None:
        problems.append((f"{path}.{name}", message))

    if not rule.name or len(rule.name) > 128 or not rule.name.isprintable():
        bad("name", "must be 1 to 128 printable characters")
    if rule.kind not in KINDS:
        bad("kind", f"must be one of {', '.join(KINDS)}")
    if rule.scope not in SCOPES:
        bad("scope", f"must be one of {', '.join(SCOPES)}")
    if rule.scope in (FLEET, EACH_NODE) and rule.scope_key is not None:
        bad("scope_key", f"a {rule.scope} scope names no key")
    if rule.scope == NODE and rule.scope_key is None:
        bad("scope_key", 'names the node (or use scope = "each_node")')
    if rule.kind in NODE_KINDS and rule.scope not in (NODE, EACH_NODE, SITE, GROUP):
        bad("scope", "a node rule judges nodes: node, each_node, or the nodes of a site or group")
    if rule.kind in WINDOW_KINDS and rule.model is None:
        bad("model", "names the model whose results it judges")
    if rule.group_by not in GROUP_BY:
        bad("group_by", "must be site, group, rule, or absent (one alert per subject)")
    if rule.severity not in SEVERITIES:
        bad("severity", f"must be one of {', '.join(SEVERITIES)}")
    for m_name, n_name in (("fire_m", "fire_n"), ("resolve_m", "resolve_n")):
        m, n = getattr(rule, m_name), getattr(rule, n_name)
        if not isinstance(n, int) or not 1 <= n <= 100:
            bad(n_name, "must be a whole number from 1 to 100")
        elif not isinstance(m, int) or not 1 <= m <= n:
            bad(m_name, f"must be a whole number from 1 to {n_name} ({n})")
    if not isinstance(rule.cooldown_seconds, int) or not 0 <= rule.cooldown_seconds <= 30 * 86400:
        bad("cooldown_seconds", "must be a whole number of seconds from 0 to 30 days")
    problems += [(f"{path}.params.{name}", message) for name, message in _param_problems(rule)]
    return problems


def _param_problems(rule: Rule) -> list[tuple[str, str]]:
    params = dict(rule.params)
    problems: list[tuple[str, str]] = []
    allowed: set[str] = set()

    def number(name: str, low: float, high: float, *, required: bool = True) -> None:
        allowed.add(name)
        value = params.get(name)
        if value is None:
            if required:
                problems.append((name, "is required"))
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            problems.append((name, f"must be a number from {low:g} to {high:g}"))

    def boolean(name: str) -> None:
        allowed.add(name)
        if params.get(name) is not None and not isinstance(params[name], bool):
            problems.append((name, "must be true or false"))

    def text(name: str, choices: tuple[str, ...] | None = None, *, required: bool = True) -> None:
        allowed.add(name)
        value = params.get(name)
        if value is None:
            if required:
                problems.append((name, "is required"))
            return
        if not isinstance(value, str) or not value:
            problems.append((name, "must be a non-empty string"))
        elif choices is not None and value not in choices:
            problems.append((name, f"must be one of {', '.join(choices)}"))

    kind = rule.kind
    if kind == FEATURE_DRIFT:
        text("feature")
    elif kind == SHARE_DRIFTED:
        number("min_share", 0.0, 1.0)
    elif kind in (PERFORMANCE, PERFORMANCE_DROP):
        text("metric", HIGHER_IS_BETTER + LOWER_IS_BETTER)
        number("confidence", 0.5, 0.999, required=False)
        boolean("estimated")
        metric = params.get("metric")
        if kind == PERFORMANCE:
            bound = "above" if metric in LOWER_IS_BETTER else "below"
            number(bound, 0.0, math.inf if bound == "above" else 1.0)
        else:
            number("drop", 0.0, math.inf if metric in LOWER_IS_BETTER else 1.0)
    elif kind == QUALITY:
        text("figure", QUALITY_FIGURES)
        number("above", 0.0, 1.0)
        text("feature", required=False)
    elif kind == NODE_OFFLINE:
        number("for_seconds", 1, 30 * 86400)
    elif kind == SDK_DROPS:
        number("above", 0, math.inf)
    elif kind == LATENCY_P95:
        number("above_ms", 0, math.inf)
    unknown = [name for name in params if name not in allowed]
    problems += [(name, "is not a parameter of this kind") for name in unknown]
    return problems


def confidence(rule: Rule) -> float:
    """The confidence of the interval a performance rule judges its figure with."""
    return float(rule.params.get("confidence", DEFAULT_CONFIDENCE))


def uses_estimates(rule: Rule) -> bool:
    """Whether a performance rule judges the window's estimate where labels leave the realised
    figure unknown (``params.estimated``, default true)."""
    estimated = rule.params.get("estimated", True)
    return rule.kind in (PERFORMANCE, PERFORMANCE_DROP) and estimated is not False


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER
