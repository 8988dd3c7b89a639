"""The HTML report is one valid, self-contained page with a chart per feature."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np

from loopml.schema import FeatureKind, FeatureSchema, FeatureSpec
from loopml.statistics.engine import evaluate_data_drift
from loopml.statistics.profile import build_profile_from_columns
from loopml.statistics.report_html import render_html


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.sections: dict[str, int] = {}
        self.current: str | None = None
        self.svgs = 0
        self.external: list[str] = []
        self.tags: list[str] = []
        self.unclosed_errors = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag in ("script", "link", "img", "iframe"):
            self.external.append(tag)
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http", "//")):
                self.external.append(attrs[key])
        if tag == "section":
            self.current = attrs.get("id")
            self.sections[self.current] = 0
        if tag == "svg":
            self.svgs += 1
            if self.current:
                self.sections[self.current] += 1
        if tag not in ("meta", "br", "line", "rect", "circle", "polyline"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in ("line", "rect", "circle", "polyline"):
            return
        if not self.stack or self.stack[-1] != tag:
            self.unclosed_errors += 1
            return
        self.stack.pop()
        if tag == "section":
            self.current = None


def test_html_report_has_svg_per_feature_and_no_external_assets():
    rng = np.random.default_rng(0)
    schema = FeatureSchema(
        features=[
            FeatureSpec(name="age", kind=FeatureKind.numeric),
            FeatureSpec(name="income <&>", kind=FeatureKind.numeric),
            FeatureSpec(name="city", kind=FeatureKind.categorical),
        ],
        target="y",
        classes=[0, 1],
    )
    cities = np.array(["Paris", "Lyon", "<script>"], dtype=object)

    def cols(n, shift):
        return {
            "age": rng.normal(40 + shift, 10, n),
            "income <&>": rng.lognormal(10, 1, n),
            "city": cities[rng.integers(0, 3, n)],
        }

    profile = build_profile_from_columns(cols(3000, 0), schema)
    history = [evaluate_data_drift(profile, cols(500, s), evaluated_at=f"day {s}") for s in (0, 2, 5)]
    report = evaluate_data_drift(profile, cols(800, 10), evaluated_at="day 10")
    page = render_html(report, profile, [h.model_dump(mode="json") for h in history])
    parser = Collector()
    parser.feed(page)
    parser.close()
    assert parser.unclosed_errors == 0
    assert parser.stack == []
    assert parser.external == []  # no script, no CDN, escaped names cannot inject tags
    assert set(parser.sections) == {f"feature-{f.name}" for f in report.features} | {"feature-income <&>"}
    assert all(count >= 2 for count in parser.sections.values())  # histogram + score history
    assert "day 10" in page
    assert "drifted" in page
    page_no_history = render_html(report, profile, None)
    parser = Collector()
    parser.feed(page_no_history)
    assert all(count == 1 for count in parser.sections.values())
