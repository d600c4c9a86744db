"""Server-rendered SVG charts: metric curves and win-rates with intervals. Pure functions, no JS.

Every piece of text is escaped here, so the returned string may be marked safe by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

SVG_NS = "http://www.w3.org/2000/svg"
MAX_POINTS = 400


def fmt_number(value: float) -> str:
    """A compact label of at most 8 characters: 3 significant digits, k/M above 10,000, an
    exponent below 0.01 (0.0002605 -> "2.61e-4", so a tick never spills off the chart)."""
    a = abs(value)
    if a == 0 or not math.isfinite(value):
        return "0" if a == 0 else str(value)
    if a >= 1e6:
        return f"{value / 1e6:.3g}M"
    if a >= 1e4:
        return f"{value / 1e3:.3g}k"
    if a >= 1000:
        return f"{value:.0f}"
    if a >= 0.01:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _thin(points: Sequence[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most `limit` points, evenly strided, always keeping the last one."""
    pts = list(points)
    if len(pts) <= limit:
        return pts
    stride = math.ceil(len(pts) / limit)
    kept = pts[::stride]
    if kept[-1] != pts[-1]:
        kept.append(pts[-1])
    return kept


def _scale(value: float, lo: float, hi: float, out_lo: float, out_hi: float) -> float:
    """Map value from [lo, hi] onto [out_lo, out_hi]; a zero-width range maps to the middle."""
    if hi == lo:
        return (out_lo + out_hi) / 2
    return out_lo + (value - lo) / (hi - lo) * (out_hi - out_lo)


def _open(width: int, height: int, label: str, css: str) -> str:
    return (
        f'<svg xmlns="{SVG_NS}" class="{css}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
    )


def line_chart(
    points: Sequence[tuple[float, float]],
    title: str,
    *,
    width: int = 320,
    height: int = 160,
    margin: tuple[int, int, int, int] = (24, 12, 28, 52),
) -> str:
    """A polyline of (step, value) points with axes, min/max labels and a title, as an SVG string.

    margin is (top, right, bottom, left). Non-finite values are dropped.
    """
    top, right, bottom, left = margin
    x0, x1, y_top, y_bottom = left, width - right, top, height - bottom
    pts = _thin(
        [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)], MAX_POINTS
    )
    parts = [_open(width, height, title, "chart line-chart")]
    parts.append(f'<text class="chart-title" x="{left}" y="{top - 8}">{escape(title)}</text>')
    parts.append(
        f'<line class="axis" x1="{x0}" y1="{y_bottom}" x2="{x1}" y2="{y_bottom}" stroke="currentColor"/>'
        f'<line class="axis" x1="{x0}" y1="{y_top}" x2="{x0}" y2="{y_bottom}" stroke="currentColor"/>'
    )
    if not pts:
        parts.append(
            f'<text class="chart-empty" x="{(x0 + x1) / 2:.1f}" y="{(y_top + y_bottom) / 2:.1f}" '
            f'text-anchor="middle">no data yet</text></svg>'
        )
        return "".join(parts)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xmin, xmax, ymin, ymax = min(xs), max(xs), min(ys), max(ys)
    coords = " ".join(
        f"{_scale(x, xmin, xmax, x0, x1):.1f},{_scale(y, ymin, ymax, y_bottom, y_top):.1f}" for x, y in pts
    )
    parts.append(
        f'<text class="tick" x="{x0 - 4}" y="{y_top + 4}" text-anchor="end">{escape(fmt_number(ymax))}</text>'
        f'<text class="tick" x="{x0 - 4}" y="{y_bottom}" text-anchor="end">{escape(fmt_number(ymin))}</text>'
        f'<text class="tick" x="{x0}" y="{height - 10}">{escape(fmt_number(xmin))}</text>'
        f'<text class="tick" x="{x1}" y="{height - 10}" text-anchor="end">{escape(fmt_number(xmax))}</text>'
    )
    parts.append(
        f'<polyline class="series" fill="none" stroke="currentColor" stroke-width="1.5" points="{coords}"/>'
    )
    if len(pts) == 1:
        cx, cy = coords.split(",")
        parts.append(f'<circle class="series-dot" cx="{cx}" cy="{cy}" r="2.5" fill="currentColor"/>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class RatePoint:
    """One row of a win-rate chart: a version's rate against its parent and its 95 % interval."""

    label: str
    rate: float | None
    low: float | None
    high: float | None
    n: int


def _short(label: str, limit: int = 26) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def win_rate_chart(rows: Sequence[RatePoint], title: str, *, width: int = 640, row_height: int = 26) -> str:
    """Dots with interval whiskers on a 0..1 axis, one row per version, a dashed line at 0.5."""
    top, bottom, left, right = 28, 26, 180, 16
    height = top + bottom + row_height * max(1, len(rows))
    x0, x1 = left, width - right
    y_bottom = height - bottom
    parts = [_open(width, height, title, "chart rate-chart")]
    parts.append(f'<text class="chart-title" x="{left}" y="{top - 12}">{escape(title)}</text>')
    half = _scale(0.5, 0, 1, x0, x1)
    parts.append(
        f'<line class="axis" x1="{x0}" y1="{y_bottom}" x2="{x1}" y2="{y_bottom}" stroke="currentColor"/>'
        f'<line class="even" x1="{half:.1f}" y1="{top - 6}" x2="{half:.1f}" y2="{y_bottom}" '
        f'stroke="currentColor" stroke-dasharray="4 3"/>'
    )
    for tick in (0.0, 0.5, 1.0):
        tx = _scale(tick, 0, 1, x0, x1)
        parts.append(
            f'<text class="tick" x="{tx:.1f}" y="{height - 8}" text-anchor="middle">{tick:.0%}</text>'
        )
    if not rows:
        parts.append(
            f'<text class="chart-empty" x="{(x0 + x1) / 2:.1f}" y="{top + row_height / 2 + 4:.1f}" '
            f'text-anchor="middle">no policy with a parent yet</text>'
        )
    for i, row in enumerate(rows):
        cy = top + row_height * i + row_height / 2
        parts.append(
            f'<text class="row-label" x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end">'
            f"{escape(_short(row.label))}<title>{escape(row.label)}</title></text>"
        )
        if row.rate is None:
            parts.append(f'<text class="chart-empty" x="{x0 + 6}" y="{cy + 4:.1f}">no comparisons yet</text>')
            continue
        if row.low is not None and row.high is not None:
            lo, hi = _scale(row.low, 0, 1, x0, x1), _scale(row.high, 0, 1, x0, x1)
            parts.append(
                f'<line class="whisker" x1="{lo:.1f}" y1="{cy:.1f}" x2="{hi:.1f}" y2="{cy:.1f}" '
                f'stroke="currentColor" stroke-width="2"/>'
            )
        cx = _scale(row.rate, 0, 1, x0, x1)
        parts.append(
            f'<circle class="rate-dot" cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="currentColor">'
            f"<title>{escape(row.label)}: {row.rate:.0%} (n={row.n})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
