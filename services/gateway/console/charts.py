"""Charts as inline SVG, drawn on the server: no chart library, nothing to load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 520, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 36


@dataclass(frozen=True)
class Point:
    """One x position: its label, value (None: not measured), error bar, and link."""

    label: str
    value: float | None
    err: float | None = None
    href: str | None = None


def _top(points: Sequence[Point], y_max: float | None) -> float:
    if y_max is not None:
        return y_max
    highest = max((p.value + (p.err or 0) for p in points if p.value is not None), default=1.0)
    return highest * 1.1 or 1.0


def _grid(top: float) -> list[str]:
    parts = []
    for i in range(5):
        value = top * i / 4
        y = HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{value:.2f}</text>')
    return parts


def _mark(p: Point, x: float, y: float, scale: float) -> str:
    bar = ""
    if p.err:
        half = p.err * scale
        bar = (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - half:.1f}" y2="{y + half:.1f}" '
               'class="err"/>')
    text = f"{p.label}: {p.value:.3f}" + (f" ± {p.err:.3f}" if p.err else "")
    dot = (f'{bar}<circle cx="{x:.1f}" cy="{y:.1f}" r="5"><title>{escape(text)}</title>'
           f'</circle><text x="{x:.1f}" y="{y - 9:.1f}" text-anchor="middle" class="val">'
           f"{p.value:.2f}</text>")
    return f'<a href="{escape(p.href)}">{dot}</a>' if p.href else dot


def line_chart(title: str, points: Sequence[Point], *, y_max: float | None = None) -> Markup:
    """A line of points over labelled x positions, each a link to its source."""
    top = _top(points, y_max)
    scale = (HEIGHT - TOP - BOTTOM) / top
    step = (WIDTH - LEFT - RIGHT) / max(len(points), 1)
    parts, line = _grid(top), []
    for i, p in enumerate(points):
        x = LEFT + step * (i + 0.5)
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" '
                     f'text-anchor="middle">{escape(p.label)}</text>')
        if p.value is not None:
            y = HEIGHT - BOTTOM - p.value * scale
            line.append(f"{x:.1f},{y:.1f}")
            parts.append(_mark(p, x, y, scale))
    shown = ", ".join(f"{p.label} {p.value:.3f}" for p in points if p.value is not None)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {escape(shown or "no data")}">'
        f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>'
        f'<polyline points="{" ".join(line)}" class="line"/>{"".join(parts)}</svg>')
