"""Small SVG charts rendered on the server (no JavaScript, no external assets).

Each function returns an ``<svg>`` element as text, with a ``<title>`` for screen readers and
numbers printed next to the marks, so a chart reads without hovering.

Examples
--------
>>> s = bars([("luxury", 9), ("mid", 4)], title="tier")
>>> s.startswith("<svg") and "luxury" in s and ">9<" in s
True
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime

__all__ = ["PALETTE", "bars", "funnel", "intervals", "timeline"]

#: Colour-blind-safe palette (Okabe–Ito).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]


def _e(s: object) -> str:
    return html.escape(str(s))


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str = "",
    width: int = 360,
    color: str = PALETTE[0],
) -> str:
    """Horizontal bars, one per ``(label, value)``, values printed at the bar end."""
    row, left, pad = 22, 130, 40
    h = max(1, len(items)) * row + 8
    top = max((v for _, v in items), default=0) or 1
    out = [
        f'<svg class="chart" role="img" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    for i, (label, v) in enumerate(items):
        y = 4 + i * row
        w = max(1.0, (width - left - pad) * float(v) / top) if v else 0.0
        out.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" class="lbl">'
            f"{_e(label)[:22]}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{color}"/>'
            f'<text x="{left + w + 4:.1f}" y="{y + 15}" class="num">{_fmt(v)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def funnel(layers: Sequence[tuple[str, float]], *, title: str = "", width: int = 420) -> str:
    """A centred funnel: one band per layer, its width proportional to the count."""
    row, h = 34, len(layers) * 34 + 6
    top = max((v for _, v in layers), default=0) or 1
    mid = width / 2
    out = [
        f'<svg class="chart" role="img" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    for i, (label, v) in enumerate(layers):
        w = max(2.0, (width - 20) * float(v) / top)
        y = 3 + i * row
        out.append(
            f'<rect x="{mid - w / 2:.1f}" y="{y}" width="{w:.1f}" height="{row - 6}" '
            f'fill="{PALETTE[i % len(PALETTE)]}" opacity="0.85"/>'
            f'<text x="{mid:.1f}" y="{y + 19}" text-anchor="middle" class="band">'
            f"{_e(label)}: {_fmt(v)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def intervals(
    items: Sequence[tuple[str, float, float, float]],
    *,
    title: str = "",
    width: int = 520,
    zero: bool = False,
    percent: bool = True,
) -> str:
    """Point estimates with intervals: ``(label, estimate, low, high)`` per row.

    With ``zero`` the axis is symmetric around 0 and a reference line marks it (differences).
    """
    row, left, right = 30, 150, 170  # room for labels and the printed interval
    h = len(items) * row + 30
    lo = min([x[2] for x in items] + [0.0])
    hi = max([x[3] for x in items] + [0.0 if zero else 0.01])
    if zero:
        m = max(abs(lo), abs(hi)) or 0.01
        lo, hi = -m, m
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return left + (width - left - right) * (v - lo) / span

    def lab(v: float) -> str:
        return f"{v:+.1%}" if zero and percent else (f"{v:.1%}" if percent else f"{v:.3g}")

    out = [
        f'<svg class="chart" role="img" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    if zero:
        out.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="0" y2="{h - 20}" class="ref"/>')
    for i, (label, est, a, b) in enumerate(items):
        y = 10 + i * row + row / 2
        out.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="lbl">{_e(label)}</text>'
            f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="3"/>'
            f'<circle cx="{x(est):.1f}" cy="{y:.1f}" r="5" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x(b) + 6:.1f}" y="{y + 4:.1f}" class="num">{lab(est)} '
            f"[{lab(a)}, {lab(b)}]</text>"
        )
    out.append(
        f'<text x="{left}" y="{h - 4}" class="axis">{lab(lo)}</text>'
        f'<text x="{width - right}" y="{h - 4}" text-anchor="end" class="axis">{lab(hi)}</text>'
        "</svg>"
    )
    return "".join(out)


def timeline(
    rows: Sequence[tuple[str, str, datetime, datetime | None]],
    *,
    now: datetime,
    title: str = "",
    width: int = 720,
) -> str:
    """Tag history: one lane per tag, one segment per version ``(tag, value, from, to)``."""
    tags = list(dict.fromkeys(r[0] for r in rows))
    if not rows:
        return ""
    t0 = min(r[2] for r in rows)
    t1 = max([now, *[r[3] for r in rows if r[3] is not None]])
    span = (t1 - t0).total_seconds() or 1.0
    left, right, lane = 170, 10, 22
    h = len(tags) * lane + 26
    colours: dict[str, str] = {}

    def x(t: datetime) -> float:
        return left + (width - left - right) * (t - t0).total_seconds() / span

    out = [
        f'<svg class="chart" role="img" width="{width}" height="{h}" '
        f'viewBox="0 0 {width} {h}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    for i, tag in enumerate(tags):
        y = 4 + i * lane
        out.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" class="lbl">{_e(tag)}</text>'
        )
        for r in (r for r in rows if r[0] == tag):
            c = colours.setdefault(f"{tag}={r[1]}", PALETTE[len(colours) % len(PALETTE)])
            a, b = x(r[2]), x(r[3] or t1)
            out.append(
                f'<rect x="{a:.1f}" y="{y + 2}" width="{max(2.0, b - a):.1f}" height="{lane - 6}" '
                f'fill="{c}" opacity="0.8"><title>{_e(r[1])} from {r[2]:%Y-%m-%d %H:%M}'
                f"</title></rect>"
                f'<text x="{a + 3:.1f}" y="{y + 14}" class="seg">{_e(r[1])[:18]}</text>'
            )
    out.append(
        f'<text x="{left}" y="{h - 4}" class="axis">{t0:%Y-%m-%d}</text>'
        f'<text x="{width - right}" y="{h - 4}" text-anchor="end" class="axis">{t1:%Y-%m-%d}</text>'
        "</svg>"
    )
    return "".join(out)
