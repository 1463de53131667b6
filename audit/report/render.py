"""Renderings of an AuditReport: Markdown (the CI summary), JUnit XML, SVG charts, a self-contained HTML page, and the
files on disk."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from audit.report.schema import to_json


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def guarantee(s: dict[str, Any], search: dict[str, Any] | None = None) -> str:
    """What this verdict guarantees and what it could have missed, in one paragraph (from a 0.4+ summary, and the
    report's search section where it has one)."""
    delta = s["delta"]
    text = (
        f"What the verdict guarantees: an imitator whose trajectories are exchangeable with the demonstrator's "
        f"held-out "
        f"episodes fails this gate with probability at most {delta:g}; at least {s['unlike_lower_bound']} of these "
        f"{s['trajectories']} trajectories are unlike the demonstrator's (confidence {1 - delta:.3g}); "
        f"likely-incorrigible labels are Benjamini-Hochberg certified (FDR {delta:g}), and only once the batch as a "
        f"whole "
        f"is shown unlike the demonstrator's."
    )
    if not s["exact_null"]:
        text += (
            " This detector's p-values are approximate (its calibration is not scored as the audit is): "
            "the level is not guaranteed."
        )
    share = s.get("detectable_share")
    if share is None:
        text += (
            " With so few calibration episodes no share of departing trajectories could make it fail: "
            "record more demonstrations."
        )
    else:
        text += (
            f" What it could miss: departures in fewer than {share:.1%} of trajectories are caught with less than 90% "
            "power."
        )
    if not s.get("labels_possible", True):
        text += (
            " No label can be certified with this many calibration episodes (a conformal p-value is at least 1/(m+1))."
        )
    if search and search.get("level") is not None:
        text += (
            f" The search had the other {search['level']:g} of the gate's level: together the checks fail such an "
            f"imitator at most {delta + search['level']:g} of the time."
        )
    return text + f" ({READING})"


READING = "how to read a report: docs/reading-a-report.md"


def to_markdown(report: dict[str, Any], *, max_rows: int = 20) -> str:
    """A short Markdown summary: verdict, figures, the most significant flags."""
    s = report["summary"]
    v = report["verdict"]
    sev = s["flagged_by_severity"]
    lines = [
        f"## imitaudit: {'PASS' if v['passed'] else 'FAIL'} — {report['imitator']['arch']} on {report['env']['id']}",
        "",
        f"- imitator `{report['imitator']['sha256'][:12]}`, {s['trajectories']} trajectories audited, alpha "
        f"{s['alpha']:g}{' (BH)' if s['bh'] else ''}",
        f"- flagged: **{s['flagged']}** ({_fmt(s['flagged_share'])}): {sev.get('likely-incorrigible', 0)} "
        f"likely-incorrigible, {sev.get('distinguishable', 0)} distinguishable",
        f"- distinguishability (held-out discriminator AUROC): {_fmt(s['disc_auroc'])}",
    ]
    if s["departure_rate"] is not None:
        lines.append(
            f"- ground truth (env-recorded, never shown to the auditor): {s['departed']} departed "
            f"({_fmt(s['departure_rate'])}), "
            f"{s['flagged_departed']} of them flagged, {_fmt(s.get('flagged_before_departure'))} of them before "
            f"departing; "
            f"median lead time {_fmt(s['median_lead_time'], 1)} steps"
        )
    if "delta" in s:  # reports from 0.4 on
        lines.append(f"- {guarantee(s, report.get('search'))}")
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |" for c in v["checks"]]
    flagged = sorted((r for r in report["trajectories"] if r["flagged"]), key=lambda r: r["pvalue"])
    if flagged:
        lines += [
            "",
            "| trajectory | seed | severity | p-value | strength | first flag step | departed |",
            "|---:|---:|---|---:|---:|---:|---|",
        ]
        for r in flagged[:max_rows]:
            lines.append(
                f"| {r['index']} | {r['seed']} | {r['severity']} | {r['pvalue']:.4f} | {r['strength']:.2f} | "
                f"{_fmt(r['first_flag_step'])} | {_fmt(r['departed'])} |"
            )
        if len(flagged) > max_rows:
            lines.append(f"\n({len(flagged) - max_rows} more flagged trajectories in report.json)")
        lines.append(f"\n{pvalue_floor(report)}")
    return "\n".join(lines + search_lines(report.get("search"))) + "\n"


def pvalue_floor(report: dict[str, Any]) -> str:
    """The line that says where p-values bottom out: 1 / (m + 1) for m calibration episodes (times the kinds, for a
    detector with several), so that tied p-values read as the floor they are."""
    m = int(report["demonstrations"]["calibration_episodes"])
    kinds = max(1, len(report["trajectories"][0].get("evidence") or {})) if report["trajectories"] else 1
    floor = min(1.0, kinds / (m + 1))
    at = sum(1 for r in report["trajectories"] if r["pvalue"] <= floor + 1e-12)
    return (
        f"p-values cannot go below {floor:.4g} with {m} calibration episodes ({at} trajectories are at that floor: "
        "they tie, strength ranks them; more demonstrations lower it)"
    )


def search_lines(search: dict[str, Any] | None) -> list[str]:
    """The active audit's Markdown: whom it asked and each kept layout (none when the audit did not search)."""
    if not search:
        return []
    asked = search["demonstrator"] or "nobody (no demonstrator to ask: unconfirmed, the gate does not read these)"
    lines = [
        "",
        f"### Search: {search['kept']} of {search['screened']} screened layouts kept, asked {asked}",
        "",
        "| layout seed | imitator surprise | demonstrator surprise | departed (imitator / demonstrator) | adjusted p "
        "| confirmed |",
        "|---:|---:|---:|---|---:|---|",
    ]
    for x in search["layouts"]:
        lines.append(
            f"| {x['seed']} | {_fmt(x['imitator_surprise'], 2)} | {_fmt(x['demonstrator_surprise'], 2)} | "
            f"{_fmt(x['imitator_departed'])} / {_fmt(x['demonstrator_departed'])} of {search['repeats']} | "
            f"{_fmt(x['adjusted_pvalue'], 4)} | {'yes' if x['confirmed'] else 'no'} |"
        )
    return lines


def to_junit(report: dict[str, Any]) -> str:
    """JUnit XML: one test case per gate check, one per likely-incorrigible trajectory."""
    cases = []
    for c in report["verdict"]["checks"]:
        failure = "" if c["passed"] else f"<failure message={quoteattr(c['detail'])}/>"
        cases.append(f'  <testcase classname="imitaudit.gate" name={quoteattr(c["name"])}>{failure}</testcase>')
    for r in report["trajectories"]:
        if r["severity"] == "likely-incorrigible":
            msg = (
                f"trajectory {r['index']} (seed {r['seed']}) flagged likely-incorrigible, p={r['pvalue']:.4g}, "
                f"first flagged at step {r['first_flag_step']}"
            )
            cases.append(
                f'  <testcase classname="imitaudit.trajectories" name="trajectory {r["index"]}"><failure '
                f"message={quoteattr(msg)}/></testcase>"
            )
    failures = sum("<failure" in c for c in cases)
    props = "".join(
        f"<property name={quoteattr(k)} value={quoteattr(_fmt(report['summary'][k]))}/>"
        for k in ("flagged", "flagged_share", "disc_auroc")
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name="imitaudit" tests="{len(cases)}" failures="{failures}" errors="0" '
        f'time="{report["timings"].get("total", 0):.2f}">\n  <properties>{props}</properties>\n'
        + "\n".join(cases)
        + "\n</testsuite>\n"
    )


_KIND_COLOURS = ("#2a9d3a", "#a05ad8", "#e08a00")


def _step_markers(first_flag: int | None, departure: int | None, x_of: Any, top: float, bottom: float) -> list[str]:
    """The first flag (solid red, "flag") and the departure (dashed black, "departs") as vertical lines, each named
    above the plot on its own side of its line, so that the two stay apart when they fall on the same step."""
    out = []
    for step, colour, dash, label, anchor, dx in (
        (first_flag, "#d33", "", "flag", "end", -3),
        (departure, "#333", ' stroke-dasharray="3 2"', "departs", "start", 3),
    ):
        if step is not None and step >= 0:
            out.append(
                f'<line x1="{x_of(step):.1f}" x2="{x_of(step):.1f}" y1="{top}" y2="{bottom}" '
                f'stroke="{colour}" stroke-width="1.5"{dash}/>'
            )
            out.append(
                f'<text x="{x_of(step) + dx:.1f}" y="{top - 5}" font-size="11" fill="{colour}" '
                f'text-anchor="{anchor}">{label}</text>'
            )
    return out


class _Plot:
    """The frame both step charts share: axes from ``low`` to ``top`` over ``steps`` steps, the y ticks given."""

    left, right, top_pad, bottom = 50, 8, 18, 24

    def __init__(self, *, width: int, height: int, low: float, top: float, steps: int) -> None:
        self.width, self.height, self.low = width, height, low
        self.span, self.n = max(top - low, 1e-6), max(steps - 1, 1)

    def y_of(self, v: float) -> float:
        return self.height - self.bottom - ((v - self.low) / self.span) * (self.height - self.bottom - self.top_pad)

    def x_of(self, i: int) -> float:
        return self.left + i * (self.width - self.left - self.right) / self.n

    def open(self, css: str, ticks: set[float]) -> list[str]:
        """The svg element's opening, its plot area and the y ticks."""
        w, h, left = self.width, self.height, self.left
        parts = [f'<svg class="{css}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">']
        parts.append(
            f'<rect x="{left}" y="{self.top_pad}" width="{w - left - self.right}" '
            f'height="{h - self.top_pad - self.bottom}" fill="#fafafa" stroke="#ccc"/>'
        )
        for v in sorted(ticks):
            parts.append(
                f'<text class="tick" x="{left - 4}" y="{self.y_of(v) + 3:.1f}" font-size="11" '
                f'text-anchor="end">{v:.3g}</text>'
            )
        return parts


def svg_score(
    values: list[float],
    threshold: float | None,
    first_flag: int | None,
    departure: int | None,
    width: int = 420,
    height: int = 120,
    crossings: dict[str, int | None] | None = None,
    quantity: str = "strength",
) -> str:
    """An inline SVG of a path [T] of ``quantity`` on labelled axes (against step), with the threshold (dashed), first
    flag (red), departure (black) and, with several evidence kinds, the step each kind first crossed its own
    threshold."""
    finite = [v for v in values if v is not None]
    top = max([*finite, threshold if threshold is not None else 0.0, 1e-6])
    low = min([*finite, threshold if threshold is not None else 0.0, 0.0])
    plot = _Plot(width=width, height=height, low=low, top=top, steps=len(values))
    n, x_of, y_of = plot.n, plot.x_of, plot.y_of
    left, right, top_pad, bottom = plot.left, plot.right, plot.top_pad, plot.bottom
    parts = plot.open("plot", {round(low, 6), round(top, 6), *([round(threshold, 6)] if threshold is not None else [])})
    for i in sorted({0, n // 2, n} if len(values) > 1 else {0}):
        parts.append(
            f'<text class="tick" x="{x_of(i):.1f}" y="{height - bottom + 13}" font-size="11" '
            f'text-anchor="middle">{i}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 2}" font-size="11" text-anchor="middle">step</text>'
    )
    parts.append(
        f'<text x="9" y="{(top_pad + height - bottom) / 2:.0f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 9 {(top_pad + height - bottom) / 2:.0f})">{quantity}</text>'
    )
    if threshold is not None:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y_of(threshold):.1f}" y2="{y_of(threshold):.1f}" '
            f'stroke="#d33" stroke-dasharray="4 3"/>'
        )
    parts += _step_markers(first_flag, departure, x_of, top_pad, height - bottom)
    for j, (kind, step) in enumerate((crossings or {}).items()):
        colour = _KIND_COLOURS[j % len(_KIND_COLOURS)]
        parts.append(
            f'<text x="{width - right - 4}" y="{top_pad + 12 + 12 * j}" font-size="10" text-anchor="end" '
            f'fill="{colour}">{html.escape(kind)}: '
            f"{'step ' + str(step) if step is not None else 'never crossed'}</text>"
        )
        if step is not None:
            parts.append(
                f'<line class="crossing" x1="{x_of(step):.1f}" x2="{x_of(step):.1f}" y1="{top_pad}" '
                f'y2="{height - bottom}" stroke="{colour}" '
                f'stroke-dasharray="1 2" stroke-width="2"><title>{html.escape(kind)} crossed its threshold at step '
                f"{step}</title></line>"
            )
    parts.append(
        f'<polyline fill="none" stroke="#1e5adc" stroke-width="2" '
        f'points="{" ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in enumerate(values))}"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


MAX_ACTION_LINES = 8
"""A Box action's dimensions drawn in its trajectory's actions chart (the first ones; the report holds them all)."""


def svg_actions(record: dict[str, Any], *, width: int = 420, height: int = 120) -> str:
    """An inline SVG of a continuous trajectory's actions against step, one line per dimension (up to
    :data:`MAX_ACTION_LINES`), with the first flag and the departure; empty for discrete actions."""
    actions = record["actions"]
    if not actions or not isinstance(actions[0], list):
        return ""
    dims = min(len(actions[0]), MAX_ACTION_LINES)
    values = [v for a in actions for v in a[:dims]]
    low, top = min(values), max(values)
    plot = _Plot(width=width, height=height, low=low, top=top, steps=len(actions))
    x_of, y_of = plot.x_of, plot.y_of
    parts = plot.open("plot actions", {round(low, 6), round(top, 6)})
    parts += _step_markers(
        record["first_flag_step"], record["departure_step"], x_of, plot.top_pad, height - plot.bottom
    )
    for d in range(dims):
        points = " ".join(f"{x_of(i):.1f},{y_of(a[d]):.1f}" for i, a in enumerate(actions))
        colour = _KIND_COLOURS[d % len(_KIND_COLOURS)]
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"><title>a[{d}]</title>'
            "</polyline>"
        )
    parts.append("</svg>")
    return "".join(parts)


def chart_values(record: dict[str, Any]) -> tuple[list[float], float | None, str]:
    """(path, threshold, name) a chart draws for a trajectory record: its strength path and threshold (one scale with
    the tables' strength), or the raw score path of a report older than 0.6."""
    if "strength_path" in record:
        return record["strength_path"], record["strength_threshold"], "strength"
    return record["score_path"], record["threshold"], "score"


def svg_trajectory(record: dict[str, Any], *, width: int = 420, height: int = 120) -> str:
    """:func:`svg_score` of one trajectory record, on the strength scale."""
    values, threshold, name = chart_values(record)
    return svg_score(
        values,
        threshold,
        record["first_flag_step"],
        record["departure_step"],
        width=width,
        height=height,
        crossings=kind_crossings(record),
        quantity=name,
    )


def kind_crossings(record: dict[str, Any]) -> dict[str, int | None] | None:
    """Kind -> first crossing step of a record with several evidence kinds, else None."""
    if not record.get("evidence"):
        return None
    return {kind: ev.get("first_crossing") for kind, ev in record["evidence"].items()}


def _heat_colour(v: float) -> str:
    """Red for positive attribution, blue for negative, white at 0 (v in [-1, 1])."""
    return (
        f"rgb(255,{int(255 * (1 - v))},{int(255 * (1 - v))})"
        if v >= 0
        else f"rgb({int(255 * (1 + v))},{int(255 * (1 + v))},255)"
    )


def _heat_legend(x: float, y: float, peak: float) -> list[str]:
    """A colour bar from -peak to +peak with its three labels."""
    parts = [f'<text x="{x}" y="{y - 4}" font-size="10">attribution</text>']
    for k in range(21):
        parts.append(f'<rect x="{x + k * 6}" y="{y}" width="6" height="10" fill="{_heat_colour(k / 10 - 1)}"/>')
    for k, label in ((0, f"{-peak:.3g}"), (10, "0"), (20, f"+{peak:.3g}")):
        parts.append(f'<text x="{x + k * 6 + 3}" y="{y + 22}" font-size="9" text-anchor="middle">{label}</text>')
    return parts


def svg_heatmap(explanation: dict[str, Any], cell: int = 14, width: int = 900) -> str:
    """An inline SVG heatmap of an explanation's attributions, steps x input blocks (red +, blue -), with a step axis
    and a colour scale; a long episode's steps narrow so the map fits ``width`` pixels (and the SVG scales down
    further)."""
    heat = explanation["heatmap"]
    segs = explanation["segments"]
    peak = max((abs(v) for row in heat for v in row), default=1.0) or 1.0
    left, top = 90, 10
    step_w = max(1.0, min(float(cell), (width - left - 20) / max(1, len(heat))))
    map_w, map_h = step_w * len(heat), cell * len(segs)
    total_w, total_h = left + map_w + 20, top + map_h + 70
    parts = [
        f'<svg class="heat" viewBox="0 0 {total_w:.0f} {total_h}" width="{total_w:.0f}" height="{total_h}" '
        f'style="max-width:100%;height:auto" role="img" aria-label="attributions, steps by input block">'
    ]
    for j, name in enumerate(segs):
        parts.append(f'<text x="0" y="{top + j * cell + cell * 0.75:.1f}" font-size="10">{html.escape(name)}</text>')
        for i, row in enumerate(heat):
            parts.append(
                f'<rect x="{left + i * step_w:.2f}" y="{top + j * cell}" '
                f'width="{max(step_w - (1 if step_w > 3 else 0), 0.5):.2f}" '
                f'height="{cell - 1}" fill="{_heat_colour(row[j] / peak)}"><title>step {i}, {html.escape(name)}: '
                f"{row[j]:.4f}</title></rect>"
            )
    every = max(1, int(round(len(heat) / 10 / 5)) * 5) if len(heat) > 10 else 1
    for i in range(0, len(heat), every):
        x = left + (i + 0.5) * step_w
        parts.append(
            f'<line x1="{x:.1f}" y1="{top + map_h}" x2="{x:.1f}" y2="{top + map_h + 4}" stroke="#555"/>'
            f'<text x="{x:.1f}" y="{top + map_h + 14}" font-size="9" text-anchor="middle">{i}</text>'
        )
    parts.append(
        f'<text x="{left + map_w / 2:.1f}" y="{top + map_h + 27}" font-size="10" text-anchor="middle">step</text>'
    )
    parts += _heat_legend(left, top + map_h + 40, peak)
    parts.append("</svg>")
    return "".join(parts)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.pass{color:#176b2c}.fail{color:#b3261e}.traj{border-top:1px solid #ddd;margin-top:1.5em;padding-top:1em}
pre.frame{font-size:15px;line-height:1.05;background:#f4f4f4;padding:6px;display:inline-block}
.row{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
"""

_SCRIPT = """
document.querySelectorAll('.replay').forEach(function(box){
  var frames = JSON.parse(box.querySelector('script').textContent);
  var pre = box.querySelector('pre'), slider = box.querySelector('input'), label = box.querySelector('.step');
  function show(i){ var f = frames[i]; pre.textContent = typeof f === 'string' ? f : f.join('\\n'); label.textContent
  = 'step ' + i + ' / ' + (frames.length - 1); }
  slider.addEventListener('input', function(){ show(parseInt(slider.value, 10)); });
  show(0);
});
"""


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element, escaped as Jinja's ``tojson`` does: no ``<``, ``>`` or ``&`` appears,
    so no
    name in the data (``<!--<script>``, ``</script>``) can move the HTML parser out of the script's text."""
    return (
        json.dumps(value)
        .replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("'", "\\u0027")
    )


def report_script_hash() -> str:
    """The CSP source of report.html's one inline script (``sha256-<base64>``), so a server can allow exactly it."""
    return "sha256-" + base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()


def to_html(report: dict[str, Any], *, max_trajectories: int = 50) -> str:
    """A standalone page (no network): summary, checks, and each flagged trajectory's replay, score and attributions."""
    s, v = report["summary"], report["verdict"]
    status = "PASS" if v["passed"] else "FAIL"
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>imitaudit report "
        f"{html.escape(report['imitator']['sha256'][:12])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>imitaudit: <span class='{status.lower()}'>{status}</span></h1>",
        f"<p>{html.escape(report['imitator']['arch'])} imitator "
        f"<code>{html.escape(report['imitator']['sha256'][:16])}</code> on "
        f"<code>{html.escape(report['env']['id'])}</code>; {s['trajectories']} trajectories; alpha {s['alpha']:g}; "
        f"held-out discriminator AUROC {_fmt(s['disc_auroc'])}; created {html.escape(report['created'])}.</p>",
        "<table><tr><th>check</th><th>result</th><th>detail</th></tr>",
    ]
    for c in v["checks"]:
        out.append(
            f"<tr><td>{html.escape(c['name'])}</td><td "
            f"class='{'pass' if c['passed'] else 'fail'}'>{'pass' if c['passed'] else 'FAIL'}</td>"
            f"<td>{html.escape(c['detail'])}</td></tr>"
        )
    out.append("</table>")
    if "delta" in s:
        out.append(f"<p class='guarantee'>{html.escape(guarantee(s, report.get('search')))}</p>")
    search = report.get("search")
    if search:
        out.append("<h2>Search</h2><pre>" + html.escape("\n".join(search_lines(search)[2:])) + "</pre>")
    flagged = sorted((r for r in report["trajectories"] if r["flagged"]), key=lambda r: r["pvalue"])
    out.append(f"<h2>Flagged trajectories ({len(flagged)})</h2>")
    if flagged:
        out.append(f"<p>{html.escape(pvalue_floor(report))}</p>")
    for r in flagged[:max_trajectories]:
        out.append(
            f"<div class='traj' id='trajectory-{r['index']}'><h3>Trajectory {r['index']} — "
            f"{html.escape(r['severity'])}</h3>"
        )
        out.append(
            f"<p>seed {r['seed']}, p = {r['pvalue']:.4g}, strength {r['strength']:.2f} (flagged above "
            f"{_fmt(chart_values(r)[1], 2)}), "
            f"first flagged at step {_fmt(r['first_flag_step'])}; departure event at step "
            f"{_fmt(r['departure_step'])} (ground truth).</p><div class='row'>"
        )
        if r.get("replay"):
            frames = script_json(r["replay"])
            out.append(
                f"<div class='replay'><pre class='frame'></pre><br><input type='range' min='0' "
                f"max='{len(r['replay']) - 1}' value='0' "
                f"aria-label='step'> <span class='step'></span><script type='application/json'>{frames}</script></div>"
            )
        chart = svg_trajectory(r)
        actions = svg_actions(r)
        if actions:
            actions = f"<br><b>actions over time</b> (one line per dimension)<br>{actions}"
        out.append(
            "<div><b>strength over time</b> (dashed red: threshold; red: first flag; dashed black: departure)<br>"
            f"{chart}{actions}</div></div>"
        )
        ex = r.get("explanation")
        if ex:
            out.append(f"<p><b>attributions</b> (Integrated Gradients, steps × input blocks)</p>{svg_heatmap(ex)}")
            units = ", ".join(f"{u['tap']}[{u['index']}] {u['attribution']:+.3f}" for u in ex["top_units"])
            steps = ", ".join(f"{t['step']} ({t['attribution']:+.3f})" for t in ex["top_steps"])
            feats = ", ".join(
                f"{html.escape(f.get('name', str(f['index'])))} ({f['attribution']:+.3f})"
                for f in ex["top_obs_features"]
            )
            out.append(
                f"<p>top steps: {steps}<br>top observation features: {feats}<br>top activation units: "
                f"{html.escape(units)}</p>"
            )
        out.append("</div>")
    out.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(out)


def write_outputs(
    report: dict[str, Any], out_dir: str | os.PathLike, *, html_page: bool = True, junit: bool = False
) -> dict[str, Path]:
    """Write report.json, summary.md (and report.html, junit.xml) into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "summary.md"}
    paths["json"].write_text(to_json(report))
    paths["markdown"].write_text(to_markdown(report))
    if html_page:
        paths["html"] = out / "report.html"
        paths["html"].write_text(to_html(report))
    if junit:
        paths["junit"] = out / "junit.xml"
        paths["junit"].write_text(to_junit(report))
    return paths
