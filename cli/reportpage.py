"""The HTML of ``genrectl report``: one self-contained page, charts as inline PNG.

Nothing is fetched when the page opens: the CSS is in the page and every chart is a
``data:image/png;base64`` image drawn with matplotlib's Agg renderer (no GUI, no pyplot).
Every string from the library (titles, paths, genres) is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from html import escape
from typing import Any

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d2330; background: #f6f7fb; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { margin: 0 0 4px; } h2 { margin-top: 36px; border-bottom: 2px solid #dde2ee; }
.meta { color: #5b6478; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 18px 0; }
.card { background: #fff; border-radius: 10px; padding: 12px 18px; min-width: 120px;
        box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.card b { display: block; font-size: 26px; }
table { border-collapse: collapse; background: #fff; width: 100%; margin: 12px 0; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e6e9f2; text-align: left; }
th { background: #eef1f8; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
img.chart { max-width: 100%; background: #fff; border-radius: 10px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 8px 12px; }
.path { color: #5b6478; font-size: 12px; word-break: break-all; }
"""


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="chart" alt="chart" src="data:image/png;base64,{data}">'


def genre_chart(rows: Sequence[dict[str, Any]]) -> str:
    """Horizontal bars: featurized tracks per genre label."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.6 + 0.32 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    names = [r["genre"] for r in rows][::-1]
    colours = ["#a0a7b4" if name == "unknown" else "#4c72b0" for name in names]
    ax.barh(names, [r["tracks"] for r in rows][::-1], color=colours)
    ax.set_xlabel("tracks")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def confidence_chart(confidences: Sequence[float], threshold: float) -> str:
    """Histogram of the model's confidence per track, with the unknown threshold marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(confidences, bins=[i / 20 for i in range(21)], color="#55a868", edgecolor="white")
    ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"unknown below {threshold:.0%}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("the model's confidence per track")
    ax.set_ylabel("tracks")
    ax.legend()
    return _png(fig)


def confusion_chart(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """Heat map, rows true genre, columns predicted, the count in each cell."""
    from matplotlib.figure import Figure

    size = 1.5 + 0.55 * len(classes)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = list(range(len(classes)))
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for r, row in enumerate(matrix):
        for c, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(c, r, str(count), ha="center", va="center", color=colour, fontsize=8)
    return _png(fig)


class Raw(str):
    """A table cell that is already HTML (built from escaped parts)."""


def _cell(value: Any, numeric: bool) -> str:
    text = value if isinstance(value, Raw) else escape("" if value is None else str(value))
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, numeric: frozenset[int] = frozenset()
) -> str:
    """An HTML table; every cell is escaped unless it is ``Raw``."""
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = "".join(
        "<tr>" + "".join(_cell(v, i in numeric) for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else "–"


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def cards(items: Sequence[tuple[str, Any]]) -> str:
    inner = "".join(f'<div class="card"><b>{escape(str(v))}</b>{escape(k)}</div>' for k, v in items)
    return f'<div class="cards">{inner}</div>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "".join(f'<section id="{escape(sid)}">{html}</section>' for sid, html in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body><main><h1>{escape(title)}</h1><p class="meta">{escape(subtitle)}</p>'
        f"{body}</main></body></html>\n"
    )
