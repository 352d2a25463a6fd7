"""The dashboard's pages: HTML written here, every value escaped, charts as inline SVG, no
script and nothing fetched from elsewhere (it works without internet)."""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fff}
header,main{max-width:1100px;margin:0 auto;padding:0 20px}
header{border-bottom:1px solid #ccc}
a{color:#0645ad}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.bad{color:#a4000f;font-weight:600}.good{color:#0a5a1e;font-weight:600}
.muted{color:#555}
figure{margin:.5em 0 1.5em}figcaption{color:#444}
.side{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
form{margin:1em 0}input,button{font:inherit;padding:3px 6px}
"""
PALETTE = ["#0b5cad", "#b03a00", "#1a7f37", "#8a2be2", "#8a6d00", "#00798c"]
_chart_ids = itertools.count()  # unique on a page (an object's id() is reused once freed)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value if value is not None else "–")
    return f"{value:.{digits}g}"


def page(title: str, body: str, *, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    """A whole page: ``crumbs`` are (link, text) pairs leading to it."""
    trail = " › ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for href, text in crumbs)
    nav = f'<nav aria-label="breadcrumb"><p>{trail}</p></nav>' if trail else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · mlsd</title><style>{STYLE}</style></head><body>"
        f"<header>{nav}<h1>{esc(title)}</h1></header><main>{body}</main></body></html>"
    )


def table(caption: str, head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table whose cells are HTML already (escape values with :func:`esc`)."""
    rows = list(rows)
    if not rows:
        return f'<p class="muted">{esc(caption)}: none yet.</p>'
    top = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<table><caption>{esc(caption)}</caption><thead><tr>{top}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def link(href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def system_href(name: str) -> str:
    return f"/systems/{quote(name, safe='')}"


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    threshold: float | None = None,
    threshold_label: str = "threshold",
    bands: dict[str, tuple[Sequence[float | None], Sequence[float | None]]] | None = None,
    y_label: str = "",
    from_zero: bool = True,
) -> str:
    """An SVG line chart of ``series`` over ``x_labels``, a dashed line at ``threshold``
    named ``threshold_label`` in the legend, and for a series named in ``bands`` its low
    and high at each x shaded in its colour; described in text for screen readers (the
    figure's caption and the SVG's title). ``from_zero=False`` fits the y axis to the data
    (for a metric whose changes are small beside its value)."""
    width, height, left, bottom, top, right = 720, 260, 56, 40, 16, 170
    values = [v for points in series.values() for v in points if v is not None]
    if not values or not x_labels:
        return f'<p class="muted">{esc(title)}: no data yet.</p>'
    bands = bands or {}
    edges = [v for band in bands.values() for side in band for v in side if v is not None]
    marks = [*values, *edges, *([0.0] if from_zero else [])]
    marks += [threshold] if threshold is not None else []
    low, high = min(marks), max(marks)
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0  # room around the data
    high, low = high + pad, (low - pad if low < 0 or not from_zero else low)
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(x_labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{high:.3g}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">'
        f"{low:.3g}</text>",
        f'<text x="12" y="{top + plot_h / 2}" font-size="11" transform="rotate(-90 12 '
        f'{top + plot_h / 2})" text-anchor="middle">{esc(y_label)}</text>',
    ]
    step = max(1, n // 8)
    for i in range(0, n, step):
        parts.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'font-size="11">{esc(x_labels[i])}</text>'
        )
    for k, name in enumerate(series):
        if name not in bands:
            continue
        inside = [(i, lo, hi) for i, (lo, hi) in enumerate(zip(*bands[name], strict=True))
                  if lo is not None and hi is not None]  # fmt: skip
        outline = [(x(i), y(hi)) for i, _, hi in inside] + [
            (x(i), y(lo)) for i, lo, _ in reversed(inside)
        ]
        if outline:
            shape = " ".join(f"{px:.1f},{py:.1f}" for px, py in outline)
            color = PALETTE[k % len(PALETTE)]
            parts.append(f'<polygon points="{shape}" fill="{color}" fill-opacity="0.15"/>')
    if threshold is not None:
        parts.append(
            f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{left + plot_w}" '
            f'y2="{y(threshold):.1f}" stroke="#a4000f" stroke-dasharray="5 4"/>'
            f'<text x="{left + plot_w + 6}" y="{top + 14 + 16 * len(series)}" font-size="12" '
            f'fill="#a4000f">- - {esc(threshold_label)} {threshold:.3g}</text>'
        )
    for k, (name, points) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        xy = [(x(i), y(v)) for i, v in enumerate(points) if v is not None]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in xy)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in xy]
        parts.append(
            f'<text x="{left + plot_w + 6}" y="{top + 14 + 16 * k}" font-size="12" '
            f'fill="{color}">{esc(name)}</text>'
        )
    described = "; ".join(
        f"{name}: " + ", ".join(number(v, 3) for v in points) for name, points in series.items()
    ) + (f"; {threshold_label} {threshold:.3g}" if threshold is not None else "")
    chart = f"chart-{next(_chart_ids)}"
    return (
        f'<figure><svg role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-labelledby="{chart}">'
        f'<title id="{chart}">{esc(title)}: {esc(described)}</title>'
        + "".join(parts)
        + f"</svg><figcaption>{esc(title)}</figcaption></figure>"
    )
