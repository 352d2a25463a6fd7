"""Self-contained HTML reports: inline SVG figures from matplotlib, tables, no JS, no network.

Every report mlsd writes for people (evaluation, monitoring) is one HTML file that opens
offline: figures are SVG text inside the page and the style sheet is inline, so the file can
be mailed, attached to an MLflow run or opened from a laptop with no server.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlsd.workspace import atomic_write_bytes

# Colours used across reports so a reader learns them once.
COLORS = {
    "model": "#1f6feb",
    "baseline": "#8b949e",
    "reference": "#8b949e",
    "current": "#d1242f",
    "threshold": "#bf8700",
    "good": "#1a7f37",
    "bad": "#d1242f",
}

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
color:#1f2328;background:#fff}
header{padding:18px 28px;border-bottom:1px solid #d0d7de;background:#f6f8fa}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;color:#59636e}
main{padding:8px 28px 40px;max-width:1200px}
section{margin-top:26px}h2{font-size:18px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:14px}.fig{margin:6px 0}.fig svg{max-width:100%;height:auto}
.note{color:#59636e}.pass{color:#1a7f37;font-weight:600}.fail{color:#d1242f;font-weight:600}
.warn{color:#9a6700;font-weight:600}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.kpi{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:120px}
.kpi b{display:block;font-size:20px}.kpi span{color:#59636e;font-size:12px}
"""


def plt():
    """matplotlib.pyplot with the file-only Agg backend (imported lazily: it is slow)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    pyplot.rcParams.update(
        {
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "mlsd",  # stable SVG ids: the same report gives the same bytes
            "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
        }
    )
    return pyplot


def subplots(width: float = 5.2, height: float = 3.4, **kwargs: Any):
    """A new (figure, axes) pair sized for a report column."""
    return plt().subplots(figsize=(width, height), **kwargs)


def svg(fig: Any) -> str:
    """Render a matplotlib figure to inline SVG text and close it."""
    pyplot = plt()
    buffer = io.StringIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        pyplot.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell: a few significant digits, blanks for missing values."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


class Page:
    """An HTML report built section by section; ``write`` saves it atomically."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []

    def section(self, title: str, note: str = "") -> Page:
        """Start a new section (closing the previous one)."""
        self._close()
        self._parts.append(f"<section><h2>{html.escape(title)}</h2>")
        if note:
            self.text(note, cls="note")
        self._open = True
        return self

    def heading(self, title: str) -> Page:
        self._parts.append(f"<h3>{html.escape(title)}</h3>")
        return self

    def text(self, text: str, cls: str = "") -> Page:
        attr = f' class="{cls}"' if cls else ""
        self._parts.append(f"<p{attr}>{html.escape(text)}</p>")
        return self

    def kpis(self, items: Mapping[str, Any]) -> Page:
        """A row of headline figures: label -> value."""
        cells = "".join(
            f'<div class="kpi"><b>{html.escape(fmt(v))}</b><span>{html.escape(k)}</span></div>'
            for k, v in items.items()
        )
        self._parts.append(f'<div class="kpis">{cells}</div>')
        return self

    def table(
        self,
        rows: Iterable[Mapping[str, Any] | Sequence[Any]],
        columns: Sequence[str] | None = None,
        *,
        classes: Mapping[int, str] | None = None,
    ) -> Page:
        """A table from dict rows (columns from the first row unless given) or sequences.

        ``classes`` maps a row index to a CSS class (``pass``, ``fail``, ``warn``).
        """
        rows = list(rows)
        if not rows:
            return self.text("(none)", cls="note")
        if columns is None:
            first = rows[0]
            columns = list(first) if isinstance(first, Mapping) else []
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = []
        for i, row in enumerate(rows):
            values = [row.get(c) for c in columns] if isinstance(row, Mapping) else list(row)
            attr = f' class="{classes[i]}"' if classes and i in classes else ""
            cells = "".join(f"<td>{html.escape(fmt(v))}</td>" for v in values)
            body.append(f"<tr{attr}>{cells}</tr>")
        thead = f"<thead><tr>{head}</tr></thead>" if head else ""
        self._parts.append(f"<table>{thead}<tbody>{''.join(body)}</tbody></table>")
        return self

    def figures(self, *svgs: str) -> Page:
        """Figures side by side (each from :func:`svg`)."""
        inner = "".join(f'<div class="fig">{s}</div>' for s in svgs if s)
        self._parts.append(f'<div class="figs">{inner}</div>')
        return self

    def raw(self, markup: str) -> Page:
        """Trusted markup made by mlsd itself (never user data)."""
        self._parts.append(markup)
        return self

    _open = False

    def _close(self) -> None:
        if self._open:
            self._parts.append("</section>")
            self._open = False

    def render(self) -> str:
        self._close()
        sub = f"<p>{html.escape(self.subtitle)}</p>" if self.subtitle else ""
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{_STYLE}</style></head><body>"
            f"<header><h1>{html.escape(self.title)}</h1>{sub}</header>"
            f"<main>{''.join(self._parts)}</main></body></html>"
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_bytes(path, self.render().encode("utf-8"))
        return path
