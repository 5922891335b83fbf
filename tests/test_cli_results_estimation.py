"""`edge-monitor results`: the estimated performance with its band and trust verdict beside the
realised, and multivariate drift per scope, in words; an untrusted estimate says so before its
reason and never reads as reassurance; `--json` carries every field of both kinds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.cli.results import report_findings
from monitor.commands import results as readers
from monitor.demo_model import MODEL_NAME
from monitor.jobs.reports import build_report
from monitor.schema import SCOPE_KINDS
from monitor.storage import results
from tests.commands.stored_rows import (
    LATEST,
    MODEL,
    REGRESSOR,
    T0,
    WINDOW,
    latest_estimates,
    latest_multivariate,
    store_story,
    store_unestimable,
)
from tests.jobs.test_reports_estimation import Page
from tests.storage.test_readout import analyse_fleet


@pytest.fixture
def cli(db_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run a command on the test's database; its exit code and stdout lines."""

    def run(*args: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = main(["--database-url", db_url, *args])
        return code, capsys.readouterr().out.splitlines()

    return run


def block(lines: list[str], scope: str) -> list[str]:
    """The lines of one scope: its head line and the indented lines under it."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{scope}: "))
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines)
    )
    return lines[start:end]


def test_an_untrusted_estimate_says_not_trusted_and_why_before_anything_else(
    cli: Any, engine: Engine
) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL)

    assert code == 0
    site_a = block(lines, "site:site-a")
    assert site_a[2] == (
        "  estimated accuracy 0.81 (0.78\u20130.84), not trusted: calibration broke at site "
        "site-a: on 40 labelled records the model was right 62% of the time where its "
        "calibrated confidence promised 81% (band 0.74\u20130.88)"
    )
    # Nothing on the estimate's lines reads as reassurance.
    estimate_lines = [line for line in site_a if "estimated" in line or "realised" in line]
    assert not any(word in " ".join(estimate_lines) for word in (" ok", "OK", ", trusted"))


def test_realised_accuracy_stands_beside_the_estimate_where_labels_arrived(
    cli: Any, engine: Engine
) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL, "--scope", "site:site-a")

    assert code == 0
    assert lines[1:] == [
        "site:site-a: no drift (0 of 4 features, 400 records)",
        "  performance: accuracy 0.620 (40 labelled, 10%)",
        "  estimated accuracy 0.81 (0.78\u20130.84), not trusted: calibration broke at site "
        "site-a: on 40 labelled records the model was right 62% of the time where its "
        "calibrated confidence promised 81% (band 0.74\u20130.88)",
        "    estimated precision 0.71 (0.68\u20130.74), recall 0.71 (0.68\u20130.74), "
        "f1 0.71 (0.68\u20130.74), roc_auc 0.86 (0.83\u20130.89) on 400 scored records",
        "    realised accuracy 0.62 on 40 labelled records, where the estimate promised 0.81 "
        "(calibration error 0.190)",
        "  multivariate drift: reconstruction error 1.31 vs reference 1, thresholds "
        "0.9\u20131.1, adjusted p-value 4.0e-06",
        "found: no drift",
        "found: multivariate drift at 1 scope(s): site:site-a",
        "found: estimate not trusted at 1 scope(s): site:site-a",
    ]


def test_a_trusted_estimate_says_what_it_rests_on(cli: Any, engine: Engine) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL)

    assert code == 0
    site_b = block(lines, "site:site-b")
    assert site_b[2] == (
        "  estimated accuracy 0.91 (0.88\u20130.94), trusted (labels agree: 0.90 realised on "
        "60 labelled records, 0.91 promised (0.85\u20130.97))"
    )
    assert "    realised accuracy 0.90 on 60 labelled records" in site_b[4]
    fleet = block(lines, "fleet")
    assert fleet[1] == (
        "  estimated accuracy 0.85 (0.82\u20130.88), trusted (no labelled records yet to check it)"
    )
    assert not any("realised" in line for line in fleet)  # no labels: nothing realised
    assert fleet[3] == (
        "  multivariate: no drift (reconstruction error 1.02 vs reference 1, thresholds "
        "0.9\u20131.1, adjusted p-value 0.6)"
    )


def test_a_scope_with_too_few_rows_says_so_for_both_kinds(cli: Any, engine: Engine) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL, "--scope", "node:node-1")

    assert code == 0
    assert block(lines, "node:node-1")[1:] == [
        "  estimated performance: too few scored records for an estimate (12 of 12)",
        "  multivariate: too little data for a verdict (12 records; reconstruction error 1.05 "
        "vs reference 1, thresholds 0.9\u20131.1)",
    ]
    assert lines[-1] == "found: no drift"  # no verdict of either kind: nothing else found


def test_what_was_found_names_the_scopes(cli: Any, engine: Engine) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL)

    assert code == 0
    assert lines[-3:] == [
        "found: no drift",
        "found: multivariate drift at 1 scope(s): site:site-a",
        "found: estimate not trusted at 1 scope(s): site:site-a",
    ]
    code, steady = cli("results", "--model", MODEL, "--scope", "site:site-b")
    assert steady[-3:] == [
        "found: no drift",
        "found: no multivariate drift",
        "found: every estimate trusted",
    ]


def test_a_scope_kind_alone_shows_every_scope_of_the_kind(cli: Any, engine: Engine) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL, "--scope", "node")

    assert code == 0
    heads = [line for line in lines if not line.startswith(("  ", "found: ", f"{MODEL}: "))]
    assert [head.split(":")[1] for head in heads] == ["node-1", "node-2", "node-3"]
    assert lines[-1] == "found: every estimate trusted"


def test_a_window_analysed_before_the_kinds_existed_says_so_in_one_line_each(
    cli: Any, engine: Engine
) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL, "--window", (T0 + WINDOW / 2).isoformat())

    assert code == 0
    assert lines[:3] == [
        f"{MODEL}: window {T0.isoformat()} to {LATEST.isoformat()}",
        "  estimated performance: not computed for this window (analysed before estimation "
        "existed)",
        "  multivariate drift: not computed for this window (analysed before it existed)",
    ]
    scopes = lines[3:]
    assert not any(line.startswith(("  estimated", "  multivariate")) for line in scopes)
    assert lines[-1] == "found: no drift"


def test_a_model_that_cannot_be_estimated_says_why_in_one_line(cli: Any, engine: Engine) -> None:
    store_unestimable(engine)

    code, lines = cli("results", "--model", REGRESSOR)
    code_node, node_lines = cli("results", "--model", REGRESSOR, "--scope", "node:node-2")

    assert code == code_node == 0
    note = "  estimated performance: none, the model is not a classifier (not_classification)"
    assert [line for line in lines if "estimat" in line] == [note]
    assert lines[1] == note and node_lines[1] == note
    assert "found: no multivariate drift" in lines


def test_json_carries_both_kinds_with_every_field(cli: Any, engine: Engine) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL, "--json")

    assert code == 0
    printed = json.loads("\n".join(lines))
    assert printed == readers.results_document(engine, MODEL)
    site_a = next(s for s in printed["windows"][0]["scopes"] if s["scope"] == "site:site-a")
    assert site_a["estimation"]["trust_reason"].startswith("not trusted: calibration broke")
    assert site_a["estimation"]["accuracy_lower"] == pytest.approx(0.78)
    assert site_a["multivariate"]["upper_threshold"] == 1.1


def test_json_of_a_window_before_the_kinds_has_them_null(cli: Any, engine: Engine) -> None:
    store_story(engine)

    code, lines = cli("results", "--model", MODEL, "--json", "--window", T0.isoformat())

    assert code == 0
    scopes = json.loads("\n".join(lines))["windows"][0]["scopes"]
    assert {(s["estimation"], s["multivariate"]) for s in scopes} == {(None, None)}


def test_status_names_joint_drift_the_fleets_estimate_and_the_untrusted_scopes(
    cli: Any, engine: Engine
) -> None:
    store_story(engine)

    code, lines = cli("status", "--model", MODEL)

    assert code == 0
    assert lines[-4:] == [
        "  multivariate drift: site site-a",
        "  estimated accuracy at fleet 0.85 (0.82\u20130.88), trusted (no labelled records yet "
        "to check it)",
        "  estimate not trusted at site site-a",
        "  accuracy: no labels yet (send them with Monitor.log_label or POST /v1/labels)",
    ]


def test_status_of_a_model_that_cannot_be_estimated(cli: Any, engine: Engine) -> None:
    store_unestimable(engine)

    code, lines = cli("status", "--model", REGRESSOR)

    assert code == 0
    assert lines[-3:] == [
        "  multivariate drift: none",
        "  estimated performance: none, the model is not a classifier (not_classification)",
        "  accuracy: no labels yet (send them with Monitor.log_label or POST /v1/labels)",
    ]


# --- after a real analysis ----------------------------------------------------------------------


def test_the_workers_estimates_and_multivariate_drift_read_back_alike_everywhere(
    cli: Any, engine: Engine
) -> None:
    """The worker analyses a simulated fleet (one site's sensors drifting, half the last
    window labelled); the CLI's words, its JSON and the report say what storage holds."""
    fleet = analyse_fleet(engine)
    with engine.connect() as conn:
        stored = results.window(conn, fleet.model_id, fleet.starts[-1])
        assert stored is not None
        report = build_report(conn, MODEL_NAME, evidently=False)

    code, lines = cli("results", "--model", MODEL_NAME)
    json_code, json_lines = cli("results", "--model", MODEL_NAME, "--json")

    assert code == json_code == 0
    order = {kind: i for i, kind in enumerate(SCOPE_KINDS)}

    def named(rows: list[Any]) -> list[str]:
        ordered = sorted(rows, key=lambda r: (order[r.scope_kind], r.scope_key))
        return [readers.scope_name(r.scope_kind, r.scope_key) for r in ordered]

    untrusted = named([r for r in stored.estimation if r.result.trusted is False])
    joint = named([r for r in stored.multivariate if r.result.drifted])
    # The drifting site's rows drift jointly too; no steady site's do.
    assert "site:site-a" in joint and not {s for s in joint if s.startswith("site:")} - {
        "site:site-a"
    }
    assert f"found: multivariate drift at {len(joint)} scope(s): {', '.join(joint)}" in lines
    assert (
        f"found: estimate not trusted at {len(untrusted)} scope(s): {', '.join(untrusted)}"
        if untrusted
        else "found: every estimate trusted"
    ) in lines
    for row in stored.estimation:
        e = row.result
        assert e.status == "ok" and e.accuracy is not None and e.trusted is not None
        said = "not trusted" if e.trusted is False else "trusted"
        head = block(lines, readers.scope_name(e.scope_kind, e.scope_key))
        assert any(
            line.startswith(f"  estimated accuracy {e.accuracy:.2f} (") and f", {said}" in line
            for line in head
        ), head
        # Half the window is labelled: the realised accuracy stands beside the estimate.
        assert e.n_labelled > 0 and e.realised_accuracy is not None
        assert any(f"realised accuracy {e.realised_accuracy:.2f} on " in line for line in head)
    document = json.loads("\n".join(json_lines))
    scopes = {s["scope"]: s for s in document["windows"][0]["scopes"]}
    for row in stored.estimation:
        answer = scopes[readers.scope_name(row.scope_kind, row.scope_key)]["estimation"]
        assert (answer["accuracy"], answer["trusted"]) == (row.result.accuracy, row.result.trusted)
    for row in stored.multivariate:
        answer = scopes[readers.scope_name(row.scope_kind, row.scope_key)]["multivariate"]
        assert answer["drifted"] == row.result.drifted
    page = Page(report.html)
    in_words = {n: n.replace(":", " ", 1) for n in [*untrusted, *joint]}
    trust = {k: r["trust"] for k, r in page.rows("estimation").items()}
    verdicts = {k: r["verdict"] for k, r in page.rows("multivariate").items()}
    assert sorted(k for k, v in trust.items() if v == "NOT TRUSTED") == sorted(
        in_words[n] for n in untrusted
    )
    assert sorted(k for k, v in verdicts.items() if v == "drifted") == sorted(
        in_words[n] for n in joint
    )


def test_report_findings_lead_each_kind_with_the_scope() -> None:
    site_a = next(e for e in latest_estimates() if e.scope_key == "site-a")
    joint_a = next(m for m in latest_multivariate() if m.scope_key == "site-a")

    lines = report_findings("site site-a", site_a, joint_a)

    assert lines == [
        "site site-a: estimated accuracy 0.81 (0.78\u20130.84), not trusted: calibration broke "
        "at site site-a: on 40 labelled records the model was right 62% of the time where its "
        "calibrated confidence promised 81% (band 0.74\u20130.88)",
        "site site-a: multivariate drift: reconstruction error 1.31 vs reference 1, thresholds "
        "0.9\u20131.1, adjusted p-value 4.0e-06",
    ]
    assert report_findings("fleet", None, None) == []
