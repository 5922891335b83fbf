"""`edge-monitor simulate`: a fleet of simulated nodes against a collector, with a scenario.

Composition only (like the CLI): registers what the run needs, either in the local database
(then an in-process collector serves it) or through a remote collector's admin API, and hands
the nodes to ``monitor.fleet.simulator``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.config import Settings
from monitor.errors import Conflict, MonitorError
from monitor.fleet.scenarios import NodePlan, plan_fleet, scenario
from monitor.fleet.simulator import FleetSimulator, SimulationConfig, SimulationResult


@dataclass(frozen=True)
class SimulateArgs:
    nodes: int
    sites: int
    scenario: str
    seed: int
    prefix: str | None
    collector: str | None
    admin_token: str | None
    config: SimulationConfig


def run_simulation(settings: Settings, args: SimulateArgs) -> int:
    """Set the fleet up, run it with a progress bar, and print what happened."""
    from monitor.demo_model import paths

    prefix = args.prefix or f"sim-{datetime.now(UTC):%Y%m%d%H%M%S}"
    plans = plan_fleet(args.nodes, sites=args.sites, prefix=prefix)
    hours = args.config.duration * args.config.speed / 3600
    plan = scenario(args.scenario, hours, sorted({p.site for p in plans}))
    files = paths()
    model, card = files.model.read_bytes(), json.loads(files.card.read_text())
    if args.collector:
        if not args.admin_token:
            raise MonitorError("--collector needs --admin-token to register the nodes")
        tokens = register_remote(args.collector, args.admin_token, plans, card["name"])
        result = _run(args.collector, tokens, plans, plan, model, card, args.config)
    else:
        from monitor.collector.server import BackgroundCollector

        tokens = register_local(settings, plans, files)
        with BackgroundCollector(settings) as collector:
            print(f"collector on {collector.url}, database {settings.shown_database_url}")
            result = _run(collector.url, tokens, plans, plan, model, card, args.config)
    affected = sorted({p.site for p in plans if plan.affects(p)})
    print(
        f"scenario {args.scenario}: {len(plans)} nodes at {args.sites} sites"
        + (f", affected: {', '.join(affected)}" if affected else "")
    )
    print(
        f"{result.predictions} predictions in {result.seconds:.0f} s, {result.delivered} "
        f"records delivered, {result.labels} labels, {result.invalid} invalid inputs"
    )
    lost = {k: v for k, v in result.dropped.items() if v and k != "sampled_out"}
    print(f"dropped: {lost or 'none'}; versions run: {sorted(set(result.versions.values()))}")
    return 0


def _run(
    url: str,
    tokens: dict[str, str],
    plans: list[NodePlan],
    plan: Any,
    model: bytes,
    card: dict[str, Any],
    config: SimulationConfig,
) -> SimulationResult:
    from monitor.progress import Progress

    simulator = FleetSimulator(url, tokens, plans, plan, model, card, config)
    print(f"{len(plans)} nodes, {config.rate:g} records/s each, {config.duration:g} s ...")
    # A bar on a terminal; in a log, a line at every tenth of the run.
    bar = Progress("  simulating")

    def progress(done: float, predictions: int) -> None:
        bar.show(done, f"{predictions} predictions")

    try:
        return simulator.run(progress=progress)
    except KeyboardInterrupt:
        # Stop the nodes while their collector still answers: left to the interpreter's exit,
        # their SDKs would retry against a stopped collector and log it after the CLI's one
        # `interrupted` line.
        for node in simulator.nodes:
            node.updater.close()
            node.runtime.close(timeout=2)
        raise


def register_local(settings: Settings, plans: list[NodePlan], files: Any) -> dict[str, str]:
    """The demo model (registered and promoted if new) and the nodes, in the local database."""
    import pyarrow.parquet as pq

    from monitor.storage import migrations, models, nodes, registry
    from monitor.storage.engine import begin_write, make_engine

    engine = make_engine(settings.resolved_database_url)
    migrations.ensure_at_head(engine)
    card = json.loads(files.card.read_text())
    with begin_write(engine) as conn:
        model = models.find_model(conn, card["name"]) or models.add_model(conn, card["name"])
        if registry.find_version(conn, model.id, card["version"]) is None or not (
            registry.get_version(conn, model.id, card["version"]).deployable
        ):
            registry.register_version(
                conn,
                model.id,
                card["version"],
                artifact=files.model.read_bytes(),
                card=card,
                reference=files.reference.read_bytes(),
                reference_rows=pq.ParquetFile(files.reference).metadata.num_rows,
                metrics=card.get("metrics"),
            )
        if registry.deployment(conn, model.id).production is None:
            registry.promote(conn, model.id, card["version"])
        tokens = {}
        for plan in plans:
            node, tokens[plan.name] = nodes.add_node(
                conn, plan.name, group_name=plan.group, site=plan.site
            )
            nodes.grant_model(conn, node.id, model.id)  # so its updater may fetch the model
    engine.dispose()
    return tokens


def register_remote(
    url: str, admin_token: str, plans: list[NodePlan], model: str
) -> dict[str, str]:
    tokens = {}
    for plan in plans:
        body = {"name": plan.name, "group": plan.group, "site": plan.site, "models": [model]}
        request = urllib.request.Request(
            f"{url.rstrip('/')}/v1/admin/nodes",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                tokens[plan.name] = json.loads(answer.read())["token"]
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            if exc.code == 409:
                raise Conflict(f"node {plan.name} exists: choose another --prefix") from exc
            raise MonitorError(f"registering {plan.name} failed: {exc.code} {detail}") from exc
        except urllib.error.URLError as exc:
            raise MonitorError(f"cannot reach the collector at {url}: {exc.reason}") from exc
    return tokens
