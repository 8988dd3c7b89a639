"""Self-contained HTML drift report: inline SVG and CSS only, so it can be stored in S3 and opened offline."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from loopml.statistics.engine import DataDriftReport, FeatureDrift, Histogram
from loopml.statistics.profile import ReferenceProfile

REF_COLOUR = "#4c78a8"
CUR_COLOUR = "#f58518"
CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f4f4f4}td.name{text-align:left}.drifted{color:#b00;font-weight:bold}.ok{color:#070}
.insufficient_data{color:#a60}section{margin:1.5em 0;border-top:1px solid #ddd}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}
"""


def _fmt(value: float | None, digits: int = 4) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}g}"


def _bars(hist: Histogram, width: int = 560, height: int = 180) -> str:
    """Reference and current shares side by side per bin."""
    n = len(hist.reference)
    top = max([*hist.reference, *hist.current, 1e-12])
    pad = 24
    slot = (width - 2 * pad) / max(n, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    parts.append(f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>')
    for i in range(n):
        for j, (share, colour) in enumerate(((hist.reference[i], REF_COLOUR), (hist.current[i], CUR_COLOUR))):
            h = (height - 2 * pad) * share / top
            x = pad + i * slot + j * slot / 2
            parts.append(
                f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{max(slot / 2 - 1, 1):.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{share:.3%}</title></rect>'
            )
    if hist.edges:
        for x_val, anchor, x in ((hist.edges[0], "start", pad), (hist.edges[-1], "end", width - pad)):
            parts.append(f'<text x="{x}" y="{height - 6}" font-size="11" text-anchor="{anchor}">{x_val:.4g}</text>')
    elif hist.labels:
        for i, label in enumerate(hist.labels):
            x = pad + (i + 0.5) * slot
            parts.append(
                f'<text x="{x:.1f}" y="{height - 8}" font-size="10" text-anchor="middle">{escape(label[:12])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _line(values: Sequence[float | None], threshold: float | None, width: int = 560, height: int = 120) -> str:
    """Score over evaluations, with the threshold as a dashed line."""
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    top = max([v for _, v in pts] + [threshold or 0.0, 1e-12]) * 1.1
    pad = 20
    step = (width - 2 * pad) / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * v / top

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">']
    if threshold is not None:
        parts.append(
            f'<line x1="{pad}" y1="{y(threshold):.1f}" x2="{width - pad}" y2="{y(threshold):.1f}" '
            'stroke="#b00" stroke-dasharray="4 3"/>'
        )
    if pts:
        path = " ".join(f"{pad + i * step:.1f},{y(v):.1f}" for i, v in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{REF_COLOUR}" stroke-width="2"/>')
        for i, v in pts:
            parts.append(f'<circle cx="{pad + i * step:.1f}" cy="{y(v):.1f}" r="3" fill="{REF_COLOUR}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _as_report(item: Any) -> DataDriftReport:
    return item if isinstance(item, DataDriftReport) else DataDriftReport.model_validate(item)


def _feature_section(f: FeatureDrift, history: list[DataDriftReport], report: DataDriftReport) -> str:
    css = f.verdict.value if f.verdict.value != "no_drift" else "ok"
    out = [f'<section id="feature-{escape(f.name)}"><h3>{escape(f.name)} ({escape(f.kind)}) ']
    out.append(f'<span class="{css}">{escape(f.verdict.value)}</span></h3>')
    out.append(
        f"<p>{escape(f.method.value if f.method else '')} = {_fmt(f.score)} "
        f"(threshold {_fmt(f.threshold)}); PSI {_fmt(f.psi)}; "
        f"missing {f.missing_rate_reference:.2%} &rarr; {_fmt(f.missing_rate_current)}</p>"
    )
    if f.histogram is not None:
        out.append(_bars(f.histogram))
    else:
        out.append(_bars(Histogram(reference=[], current=[])))
    if history:
        scores = []
        for past in [*history, report]:
            match = [p for p in past.features if p.name == f.name]
            scores.append(match[0].score if match else None)
        out.append("<p>Score over evaluations</p>" + _line(scores, f.threshold))
    out.append("</section>")
    return "".join(out)


def render_html(report: DataDriftReport, profile: ReferenceProfile, history: list[Any] | None = None) -> str:
    """One page: verdict, per-feature table and charts, and score history (oldest first)."""
    past = [_as_report(h) for h in history or []]
    rows = []
    for f in report.features:
        css = f.verdict.value if f.verdict.value != "no_drift" else "ok"
        rows.append(
            f'<tr><td class="name"><a href="#feature-{escape(f.name)}">{escape(f.name)}</a></td>'
            f"<td>{escape(f.kind)}</td><td>{escape(f.method.value if f.method else '')}</td>"
            f"<td>{_fmt(f.score)}</td><td>{_fmt(f.threshold)}</td>"
            f"<td>{_fmt(f.psi)} ({escape(f.psi_level.value if f.psi_level else '')})</td>"
            f"<td>{f.n_current}</td><td class='{css}'>{escape(f.verdict.value)}</td></tr>"
        )
    share = "&ndash;" if report.share_drifted is None else f"{report.share_drifted:.0%}"
    history_block = ""
    if past:
        shares = [r.share_drifted for r in [*past, report]]
        labels = ", ".join(escape(r.evaluated_at or f"#{i + 1}") for i, r in enumerate([*past, report]))
        history_block = (
            f"<h2>Share of drifted features over time</h2><p>{labels}</p>{_line(shares, report.drift_share)}"
        )
    verdict_css = report.verdict.value if report.verdict.value != "no_drift" else "ok"
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>loopml drift report</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>Data drift: <span class='{verdict_css}'>{escape(report.verdict.value)}</span></h1>"
        f"<p>{escape(report.evaluated_at or '')} &middot; reference {profile.n_rows} rows, current "
        f"{report.n_current} rows &middot; {report.n_drifted} of {report.n_evaluated} features drifted "
        f"({share}; dataset threshold {report.drift_share:.0%})</p>"
        f"<p class='legend'><span style='background:{REF_COLOUR}'></span>reference"
        f"<span style='background:{CUR_COLOUR}'></span>current</p>"
        "<table><tr><th>feature</th><th>kind</th><th>method</th><th>score</th><th>threshold</th>"
        f"<th>PSI</th><th>current n</th><th>verdict</th></tr>{''.join(rows)}</table>"
        f"{history_block}" + "".join(_feature_section(f, past, report) for f in report.features) + "</body></html>"
    )
