"""The HTML report of one run: the engine's data drift page (``render_html``), with the run's header
(model, window, alerts, retraining decision) and the other checks (prediction and label drift,
performance with confidence intervals, data quality, bias) added as plain tables. Self-contained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from loopml.drift.models import DriftRunReport, HistoryPoint
from loopml.statistics.engine import FeatureDrift
from loopml.statistics.profile import ReferenceProfile
from loopml.statistics.report_html import render_html


def _fmt(value: float | None, digits: int = 4) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}g}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _drift_row(f: FeatureDrift) -> list[str]:
    css = f.verdict.value if f.verdict.value != "no_drift" else "ok"
    return [
        escape(f.name),
        escape(f.method.value if f.method else ""),
        _fmt(f.score),
        _fmt(f.threshold),
        str(f.n_current),
        f"<span class='{css}'>{escape(f.verdict.value)}</span>",
    ]


def _header(report: DriftRunReport) -> str:
    s = report.summary
    d = s.trigger
    alerts = "".join(f"<li>{escape(a)}</li>" for a in s.alerts) or "<li>none</li>"
    execution = f" &middot; execution {escape(d.execution_name)}" if d.execution_name else ""
    return (
        f"<section id='run'><h2>Model {escape(s.model)} v{s.model_version} &middot; run {escape(s.run_id)}</h2>"
        f"<p>window {escape(s.window_start.isoformat())} &rarr; {escape(s.window_end.isoformat())} &middot; "
        f"{s.n_rows} predictions, {s.n_labelled} labelled</p>"
        f"<h3>Alerts</h3><ul id='alerts'>{alerts}</ul>"
        f"<h3>Retraining</h3><p id='trigger'><b>{escape(d.action.value)}</b> ({escape(d.code)}): "
        f"{escape(d.message)}{execution}</p></section>"
    )


def _details(report: DriftRunReport) -> str:
    out = []
    pd = report.prediction_drift
    if pd is not None:
        parts = pd.parts
        out.append(f"<section id='prediction-drift'><h2>Prediction drift: {escape(pd.verdict.value)}</h2>")
        out.append(_table(["part", "method", "score", "threshold", "current n", "verdict"], map(_drift_row, parts)))
        out.append("</section>")
    if report.label_drift is not None:
        ld = report.label_drift
        out.append(f"<section id='label-drift'><h2>Label drift: {escape(ld.verdict.value)}</h2>")
        out.append(_table(["part", "method", "score", "threshold", "current n", "verdict"], [_drift_row(ld)]))
        out.append("</section>")
    perf = report.performance
    out.append(
        f"<section id='performance'><h2>Performance: {escape(perf.verdict.value)}</h2>"
        f"<p>{perf.n_labelled} labelled predictions; {perf.confidence:.0%} confidence intervals</p>"
    )
    if perf.metrics:
        out.append(
            _table(
                ["metric", "live", "lower", "upper", "interval", "validation", "regressed"],
                (
                    [
                        escape(m.name),
                        _fmt(m.value),
                        _fmt(m.lower),
                        _fmt(m.upper),
                        escape(m.interval),
                        _fmt(m.reference),
                        f"<span class='{'drifted' if m.regressed else 'ok'}'>{'yes' if m.regressed else 'no'}</span>",
                    ]
                    for m in perf.metrics
                ),
            )
        )
    out.append("</section>")
    q = report.quality
    issues = [(escape(f.name), escape("; ".join(f.issues))) for f in q.features if f.issues]
    out.append(f"<section id='quality'><h2>Data quality: {'flagged' if q.flagged else 'ok'}</h2>")
    out.append(_table(["feature", "issues"], issues) if issues else "<p>no issues</p>")
    out.append("</section>")
    for title, bias in (("Bias (all predictions)", report.bias), ("Bias (labelled)", report.bias_labelled)):
        if bias is None:
            continue
        rows = [
            [
                escape(a.attribute),
                escape(g.group),
                str(g.n),
                _fmt(g.selection_rate),
                _fmt(g.true_positive_rate),
                _fmt(g.accuracy),
            ]
            for a in bias.attributes
            for g in a.groups
        ]
        diffs = "".join(
            f"<li>{escape(a.attribute)}: parity difference {_fmt(a.demographic_parity_difference)}"
            f"{' (flagged)' if a.parity_flagged else ''}, equal opportunity difference "
            f"{_fmt(a.equal_opportunity_difference)}{' (flagged)' if a.opportunity_flagged else ''}"
            f"{' (too few rows per group)' if a.insufficient_data else ''}</li>"
            for a in bias.attributes
        )
        out.append(f"<section class='bias'><h2>{title}: positive class {escape(bias.positive_class)}</h2>")
        out.append(f"<ul>{diffs}</ul>")
        out.append(_table(["attribute", "group", "n", "selection rate", "TPR", "accuracy"], rows))
        out.append("</section>")
    rb = report.regression_bias
    if rb is not None:
        rows = [
            [escape(a.attribute), escape(g.group), str(g.n), _fmt(g.mean_prediction), _fmt(g.mean_absolute_error)]
            for a in rb.attributes
            for g in a.groups
        ]
        diffs = "".join(
            f"<li>{escape(a.attribute)}: mean prediction difference {_fmt(a.mean_prediction_difference)}"
            f"{' (flagged)' if a.prediction_flagged else ''}, error difference {_fmt(a.error_difference)}"
            f"{' (flagged)' if a.error_flagged else ''}"
            f"{' (too few rows per group)' if a.insufficient_data else ''}</li>"
            for a in rb.attributes
        )
        out.append(
            f"<section class='bias'><h2>Bias (regression): differences as shares, threshold {_fmt(rb.threshold)}</h2>"
        )
        out.append(f"<ul>{diffs}</ul>")
        out.append(_table(["attribute", "group", "n", "mean prediction", "mean absolute error"], rows))
        out.append("</section>")
    if report.notes:
        out.append("<section id='notes'><h2>Notes</h2><ul>")
        out.extend(f"<li>{escape(n)}</li>" for n in report.notes)
        out.append("</ul></section>")
    return "".join(out)


def render_page(report: DriftRunReport, profile: ReferenceProfile, history: Sequence[HistoryPoint]) -> str:
    page = render_html(report.data_drift, profile, [h.data_drift for h in history])
    anchor = "</h1>" if "</h1>" in page else "<body>"  # the run header goes under the verdict
    page = page.replace(anchor, anchor + _header(report), 1)
    return page.replace("</body>", _details(report) + "</body>", 1)
