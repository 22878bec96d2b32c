"""Line charts small enough for Dagster's UI to show inline in an asset's metadata table.

The UI renders a Markdown metadata value in its row only when the text is shorter than 1,000
characters; longer values hide behind [Show Markdown] (ui-core's MetadataEntry.tsx, Dagster
1.13), and its Markdown sanitiser keeps `data:` image sources (MarkdownWithPlugins.tsx). A
PNG plot never fits, so a chart here is a hand-written SVG of a few hundred characters: the
series as one path in a 200 x 60 box, thinned to as many evenly spaced points as fit (the
first and last always kept), a dashed guide, the lowest and highest y and the first and last
x as labels. Percent-encoded rather than base64: a third shorter.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import numpy as np

INLINE_LIMIT = 1000  # characters: the UI's bound for showing Markdown in the row
WIDTH, HEIGHT = 200, 60
POINT_BUDGETS = (400, 200, 120, 80, 60, 40, 30, 20, 12, 6, 2)
NOTHING = "no race day measured yet"
# what a data: URL in a Markdown link may hold as it is (no space, '#' or parenthesis)
_SAFE = "/:;=,.-_'<>"


def chart(
    title: str,
    x: Sequence[float],
    y: Sequence[float],
    x_labels: tuple[str, str],
    level: float | None = None,
    diagonal: bool = False,
) -> str:
    """A Markdown image of `y` over `x` shorter than INLINE_LIMIT, or NOTHING when no point
    is finite. Dashed: `level` across the box (the y axis spans it too), or with `diagonal`
    the line y = x of a box spanning 0...1 on both axes (a reliability curve)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if not len(x):
        return NOTHING
    if diagonal:
        scale = _Scale(0.0, 1.0, 0.0, 1.0)
        guide = "M0,60L200,0"
    else:
        span = [y.min(), y.max()] + ([] if level is None else [level])
        scale = _Scale(x.min(), x.max(), min(span), max(span))
        guide = "" if level is None else f"M0,{scale.y(level)}H{WIDTH}"
    for budget in POINT_BUDGETS:
        shown = _thinned(len(x), budget)
        svg = _svg(title, scale, _path(*scale(x[shown], y[shown])), guide, x_labels)
        markdown = f"![{title}](data:image/svg+xml,{quote(svg, safe=_SAFE)})"
        if len(markdown) < INLINE_LIMIT:
            return markdown
    raise ValueError(f"chart {title!r}: even two points exceed {INLINE_LIMIT} characters")


class _Scale:
    """Data coordinates to whole SVG units in the 200 x 60 box (y grows downwards); a single
    x sits mid-box, a flat y mid-height."""

    def __init__(self, x0: float, x1: float, low: float, high: float):
        self.low, self.high = float(low), float(high)
        self.x0, self.dx = (x0, x1 - x0) if x1 > x0 else (x0 - 1, 2.0)
        pad = (high - low) * 0.05 or 0.5
        self.y0, self.dy = low - pad, (high - low) + 2 * pad

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.rint((x - self.x0) / self.dx * WIDTH).astype(int), self.y(y)

    def y(self, value):
        return np.rint(HEIGHT - (np.asarray(value) - self.y0) / self.dy * HEIGHT).astype(int)


def _thinned(count: int, budget: int) -> np.ndarray:
    """At most `budget` evenly spaced indices of `count`, the first and last included."""
    if count <= budget:
        return np.arange(count)
    return np.unique(np.rint(np.linspace(0, count - 1, budget)).astype(int))


def _path(points_x: np.ndarray, points_y: np.ndarray) -> str:
    """One path through the points in relative moves ('l3-2,3,1'); a single point is a short
    dash across it."""
    steps = np.column_stack([np.diff(points_x), np.diff(points_y)])
    if not len(steps):
        return f"M{points_x[0] - 4},{points_y[0]}h8"
    numbers = ",".join(f"{a},{b}" for a, b in steps).replace(",-", "-")
    return f"M{points_x[0]},{points_y[0]}l{numbers}"


def _svg(title: str, scale: _Scale, series: str, guide: str, x_labels: tuple[str, str]) -> str:
    """Lines inherit the root's stroke and no fill; the text group paints its own."""
    top, bottom = scale.y(scale.high), scale.y(scale.low)
    first, last = (_escaped(label) for label in x_labels)
    parts = [
        "<svg xmlns='http://www.w3.org/2000/svg' viewBox='-34 -14 244 88' width='366'"
        f" height='132' fill='none' stroke='#999'><path d='M0,0V{HEIGHT}H{WIDTH}'/>",
        f"<path d='{guide}' stroke-dasharray='3'/>" if guide else "",
        f"<path d='{series}' stroke='#1f77b4' stroke-width='2'/>",
        "<g font-family='sans-serif' font-size='8' fill='#333' stroke='none'>",
        f"<text y='-5'>{_escaped(title)}</text><text y='70'>{first}</text>",
        f"<g text-anchor='end'><text x='-3' y='{top + 3}'>{_number(scale.high)}</text>",
        f"<text x='-3' y='{bottom + 3}'>{_number(scale.low)}</text>",
        f"<text x='{WIDTH}' y='70'>{last}</text>" if last != first else "",
        "</g></g></svg>",
    ]
    return "".join(parts)


def _number(value: float) -> str:
    """Three significant digits, whole numbers from 1,000 on (no exponent in a label)."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
