"""Inline SVG charts rendered on the server: no chart library, no script, readable offline.

Pure functions from numbers to markup; every text is escaped. Colours come from CSS classes
(``s-SUCCESS``, ``s-FAILED`` ...) so that dark mode restyles them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 200, 40, 24, 10


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _scale_max(values: Sequence[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def stacked_bars(labels: Sequence[str], series: Sequence[Series], *, title: str) -> Markup:
    """One bar per label, stacked by series (e.g. deliveries per hour by status)."""
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top = _scale_max(totals)
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(labels), 1)
    parts = [_frame(title, top)]
    for i, label in enumerate(labels):
        y = float(HEIGHT - PAD_BOTTOM)
        x = PAD_LEFT + i * step + step * 0.1
        for s in series:
            h = s.values[i] / top * plot_h
            if h > 0:
                y -= h
                parts.append(
                    f'<rect class="s-{escape(s.name)}" x="{x:.1f}" y="{y:.1f}" '
                    f'width="{step * 0.8:.1f}" height="{h:.1f}"><title>{escape(label)} '
                    f"{escape(s.name)}: {s.values[i]:g}</title></rect>"
                )
        if i % max(1, len(labels) // 8) == 0:
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}">{escape(label)}</text>')
    return _svg(title, parts, legend=[s.name for s in series])


def lines(labels: Sequence[str], series: Sequence[Series], *, title: str, unit: str) -> Markup:
    """One polyline per series (e.g. latency p50/p95/p99 per hour); gaps are zeros."""
    top = _scale_max([v for s in series for v in s.values])
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(labels) - 1, 1)
    parts = [_frame(title, top, unit)]
    for s in series:
        # Hours without a value are gaps, not zeros: a line through them would lie.
        xy = [
            (PAD_LEFT + i * step, HEIGHT - PAD_BOTTOM - v / top * plot_h)
            for i, v in enumerate(s.values)
        ]
        for run in _runs([v > 0 for v in s.values]):
            points = " ".join(f"{xy[i][0]:.1f},{xy[i][1]:.1f}" for i in run)
            parts.append(f'<polyline class="l-{escape(s.name)}" fill="none" points="{points}"/>')
            parts.extend(
                f'<circle class="s-{escape(s.name)}" cx="{xy[i][0]:.1f}" cy="{xy[i][1]:.1f}" '
                f'r="2.5"><title>{escape(labels[i])} {escape(s.name)}: {s.values[i]:g}'
                f"{escape(unit)}</title></circle>"
                for i in run
            )
    for i, label in enumerate(labels):
        if i % max(1, len(labels) // 8) == 0:
            x = PAD_LEFT + i * step
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}">{escape(label)}</text>')
    return _svg(title, parts, legend=[s.name for s in series])


def hbars(items: Sequence[tuple[str, float]], *, title: str) -> Markup:
    """Horizontal bars, largest first (e.g. failures per integration)."""
    if not items:
        return Markup(  # noqa: S704 (every text inside is escaped)
            f'<p class="empty">{escape(title)}: nothing to show.</p>'
        )
    top = _scale_max([v for _, v in items])
    row, label_w = 24, 220
    height = row * len(items) + 8
    parts = []
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        w = value / top * (WIDTH - label_w - 50)
        parts.append(
            f'<text class="label" x="0" y="{y + 15}">{escape(name[:32])}</text>'
            f'<rect class="s-FAILED" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="16">'
            f"<title>{escape(name)}: {value:g}</title></rect>"
            f'<text class="label" x="{label_w + w + 6:.1f}" y="{y + 15}">{value:g}</text>'
        )
    return _svg(title, parts, height=height, stretch=False)


def _runs(present: Sequence[bool]) -> list[list[int]]:
    """Indexes of consecutive True values, run by run."""
    runs: list[list[int]] = []
    for i, here in enumerate(present):
        if not here:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _frame(title: str, top: float, unit: str = "") -> str:
    base = HEIGHT - PAD_BOTTOM
    return (
        f'<line class="grid" x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH}" y2="{base}"/>'
        f'<line class="grid" x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{WIDTH}" y2="{PAD_TOP}"/>'
        f'<text class="axis" x="0" y="{PAD_TOP + 8}">{top:g}{escape(unit)}</text>'
        f'<text class="axis" x="0" y="{base}">0</text>'
    )


def _svg(
    title: str,
    parts: list[str],
    *,
    legend: Sequence[str] = (),
    height: int = HEIGHT,
    stretch: bool = True,
) -> Markup:
    keys = "".join(
        f'<span class="key"><i class="s-{escape(n)}"></i>{escape(n)}</span>' for n in legend
    )
    body = "".join(parts)
    # Time series fill the box; bars with labels keep their proportions (text would squash).
    aspect = 'preserveAspectRatio="none" class="fill"' if stretch else 'class="natural"'
    return Markup(  # noqa: S704 (every text inside is escaped)
        f'<figure class="chart"><figcaption>{escape(title)} {keys}</figcaption>'
        f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
        f"{aspect}>{body}</svg></figure>"
    )
