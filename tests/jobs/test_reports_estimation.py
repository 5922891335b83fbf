"""The report's "Estimated performance" and "Multivariate drift" sections: per scope the
estimate, its band, the accuracy realised where labels arrived, whether it is trusted and which
evidence decided; the reconstruction error against the reference's and its thresholds, and the
verdict. An untrusted estimate is never drawn as good news; a window analysed before the kinds
existed, or a model that cannot be estimated, says so in one line. The page stays offline."""

from __future__ import annotations

from html.parser import HTMLParser

from sqlalchemy import Engine

from monitor.jobs.reports import build_report
from tests.commands.stored_rows import MODEL, REGRESSOR, T0, store_story, store_unestimable


class Page(HTMLParser):
    """The text of each element with an id, and each table's rows as lists of cell texts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.classes: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._open: list[tuple[str, str | None]] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        ident = found.get("id")
        if ident:
            self.by_id[ident] = ""
            self.classes[ident] = found.get("class") or ""
        if tag == "table":
            self._table = ident
            self.tables[ident or ""] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag not in ("meta", "br"):
            self._open.append((tag, ident))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, ident in self._open:
            if ident:
                self.by_id[ident] += data
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table: str) -> dict[str, dict[str, str]]:
        """A table's rows by their first cell, each a dict by column header."""
        header, *rows = self.tables[table]
        return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_the_estimates_table_shows_band_realised_trust_and_the_deciding_evidence(
    engine: Engine,
) -> None:
    store_story(engine)

    with engine.connect() as conn:
        built = build_report(conn, MODEL, scope="site:site-a", evidently=False)

    page = Page(built.html)
    assert page.by_id["estimate"] == "Estimated accuracy 0.810 (0.780\u20130.840): NOT TRUSTED"
    assert page.classes["estimate"] == "verdict bad"
    rows = page.rows("estimation")
    # The report's own scope first, then the untrusted, the unjudged and the trusted.
    assert list(rows) == [
        "site site-a", "node node-1", "fleet", "site site-b", "node node-2", "node node-3",
    ]  # fmt: skip
    site_a = rows["site site-a"]
    assert site_a["estimated accuracy"] == "0.810"
    assert site_a["band"] == "0.780\u20130.840"
    assert site_a["realised accuracy (labelled)"] == "0.620 (40)"
    assert site_a["estimate for those records"] == "0.810"
    assert site_a["trust"] == "NOT TRUSTED"
    assert site_a["decided by"] == "calibration: this window's labels contradict it"
    assert site_a["why"].startswith("calibration broke at site site-a: on 40 labelled records")
    site_b = rows["site site-b"]
    assert (site_b["trust"], site_b["decided by"]) == ("trusted", "labels agree with it")
    assert site_b["realised accuracy (labelled)"] == "0.900 (60)"
    fleet = rows["fleet"]
    assert (fleet["trust"], fleet["decided by"]) == ("trusted", "no contrary evidence")
    assert fleet["realised accuracy (labelled)"] == "-"
    node_1 = rows["node node-1"]
    assert (node_1["estimated accuracy"], node_1["trust"]) == ("-", "-")
    assert node_1["why"] == "too few scored records for an estimate"
    assert built.estimation is not None and built.estimation.trusted is False


def test_the_multivariate_table_shows_error_reference_thresholds_and_verdict(
    engine: Engine,
) -> None:
    store_story(engine)

    with engine.connect() as conn:
        drifted = build_report(conn, MODEL, scope="site:site-a", evidently=False)
        steady = build_report(conn, MODEL, scope="site:site-b", evidently=False)

    page = Page(drifted.html)
    assert page.by_id["multivariate-verdict"] == "Multivariate drift detected"
    assert page.classes["multivariate-verdict"] == "verdict bad"
    rows = page.rows("multivariate")
    assert rows["site site-a"] == {
        "scope": "site site-a",
        "records": "400",
        "reconstruction error": "1.310",
        "reference error": "1.000",
        "thresholds": "0.900\u20131.100",
        "adjusted p-value": "4e-06",
        "verdict": "drifted",
        "NannyML's verdict": "drifted",
    }
    assert rows["node node-1"]["verdict"] == "insufficient data"
    assert {r["verdict"] for k, r in rows.items() if k not in ("site site-a", "node node-1")} == {
        "not drifted"
    }
    assert Page(steady.html).by_id["multivariate-verdict"] == "No multivariate drift"
    assert drifted.multivariate is not None and drifted.multivariate.drifted is True


def test_a_trusted_estimate_is_plain_never_green(engine: Engine) -> None:
    store_story(engine)

    with engine.connect() as conn:
        built = build_report(conn, MODEL, scope="site:site-b", evidently=False)

    page = Page(built.html)
    assert page.by_id["estimate"] == "Estimated accuracy 0.910 (0.880\u20130.940): trusted"
    assert page.classes["estimate"] == "verdict plain"


def test_a_window_analysed_before_the_kinds_says_so_in_one_line_each(engine: Engine) -> None:
    store_story(engine)

    with engine.connect() as conn:
        built = build_report(conn, MODEL, T0.isoformat(), evidently=False)

    page = Page(built.html)
    assert page.by_id["estimation-note"] == (
        "Not computed for this window: it was analysed before performance estimation existed."
    )
    assert page.by_id["multivariate-note"] == (
        "Not computed for this window: it was analysed before multivariate drift existed."
    )
    assert "estimation" not in page.tables and "multivariate" not in page.tables
    assert built.estimation is None and built.multivariate is None


def test_a_model_that_cannot_be_estimated_says_why(engine: Engine) -> None:
    store_unestimable(engine)

    with engine.connect() as conn:
        built = build_report(conn, REGRESSOR, evidently=False)

    page = Page(built.html)
    assert page.by_id["estimation-note"] == (
        "Not estimable: the model is not a classifier (not_classification)."
    )
    assert "estimation" not in page.tables
    assert set(page.rows("multivariate")) >= {"fleet", "site site-a", "node node-3"}


def test_the_page_stays_self_contained(engine: Engine) -> None:
    store_story(engine)

    with engine.connect() as conn:
        html = build_report(conn, MODEL, evidently=False).html

    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "<h2>Estimated performance</h2>" in html and "<h2>Multivariate drift</h2>" in html
