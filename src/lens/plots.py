"""The one way Lens draws charts: small PNGs with Pillow (a core dependency; no plotting library).

- `bar_chart`: grouped bars, e.g. a histogram (one series) or a loss per size and run.
- `line_chart`: one line of points per series, e.g. a score over training steps.

Both draw a title, a y axis from 0 (or the data's minimum, if below 0) with five labelled grid lines,
x labels under the data and a legend; they write `path` and return it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = ((66, 114, 196), (237, 125, 49), (112, 173, 71), (165, 105, 189), (128, 128, 128), (200, 60, 60))
HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 360, 60, 10, 40, 50  # canvas height and margins (pixels)
CHAR = 6  # width of one character of Pillow's default font


class _Axes:
    """A white canvas with a title, a y range and its grid; maps values to pixels."""

    def __init__(self, width: int, lo: float, hi: float, title: str, ylabel: str, legend: Sequence[str]):
        rows = math.ceil(len(legend) / max(1, (width - LEFT) // 200)) if legend else 0
        self.width, self.height = width, HEIGHT + 16 * max(0, rows - 1)
        self.bottom = self.height - BOTTOM - 16 * max(0, rows - 1)
        self.image = Image.new("RGB", (self.width, self.height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.lo, self.hi = lo, hi if hi > lo else lo + 1.0
        self.draw.text((LEFT, 8), title, fill="black")
        if ylabel:
            self.draw.text((LEFT, 22), ylabel, fill=(90, 90, 90))
        for k in range(5):
            v = self.lo + (self.hi - self.lo) * k / 4
            y = self.y(v)
            self.draw.line([(LEFT, y), (self.width - RIGHT, y)], fill=(225, 225, 225))
            self.draw.text((4, y - 6), f"{v:.3g}", fill="black")
        for j, name in enumerate(legend):
            per_row = max(1, (self.width - LEFT) // 200)
            x0, y0 = LEFT + (j % per_row) * 200, self.bottom + 24 + 16 * (j // per_row)
            self.draw.rectangle([x0, y0, x0 + 10, y0 + 10], fill=COLOURS[j % len(COLOURS)])
            self.draw.text((x0 + 14, y0 - 1), name, fill="black")

    def y(self, value: float) -> float:
        return self.bottom - (self.bottom - TOP) * (value - self.lo) / (self.hi - self.lo)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path)
        return path


def _range(values: Sequence[float], headroom: float = 1.15) -> tuple[float, float]:
    lo, hi = min(0.0, min(values, default=0.0)), max(values, default=1.0)
    return lo, (hi * headroom if hi > 0 else 1.0)


def bar_chart(
    path: str | Path,
    groups: Sequence[str],
    series: Sequence[str],
    values: Mapping[tuple[str, str], float],
    title: str = "",
    ylabel: str = "",
    label: Callable[[float], str] | None = lambda v: f"{v:.3f}",
    group_px: int = 70,
) -> Path:
    """Bars of values[(group, series)] (missing pairs are left out), groups along x, one colour a series.

    `label` writes each bar's value above it (None: no value labels); `group_px` is the width per bar.
    """
    width = max(480, LEFT + RIGHT + group_px * len(groups) * max(1, len(series)), 70 + CHAR * len(title))
    legend = list(series) if len(series) > 1 else []
    axes = _Axes(width, *_range(list(values.values())), title, ylabel, legend)
    group_w = (width - LEFT - RIGHT) / max(1, len(groups))
    bar_w = group_w * 0.8 / max(1, len(series))
    every = max(1, math.ceil(CHAR * max((len(g) for g in groups), default=1) / group_w))
    for i, group in enumerate(groups):
        x0 = LEFT + i * group_w + group_w * 0.1
        for j, name in enumerate(series):
            if (group, name) not in values:
                continue
            v = values[(group, name)]
            top, base = sorted((axes.y(v), axes.y(0.0)))
            axes.draw.rectangle(
                [x0 + j * bar_w, top, x0 + (j + 1) * bar_w - 2, base], fill=COLOURS[j % len(COLOURS)]
            )
            if label is not None:
                axes.draw.text((x0 + j * bar_w, top - 12), label(v), fill="black")
        if i % every == 0:
            axes.draw.text((x0, axes.bottom + 6), group, fill="black")
    return axes.save(path)


def line_chart(
    path: str | Path,
    lines: Mapping[str, Sequence[tuple[float, float]]],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    width: int = 600,
) -> Path:
    """One line with dot markers per name in `lines` ({name: [(x, y), ...]}), x scaled to the data."""
    points = [p for line in lines.values() for p in line]
    axes = _Axes(width, *_range([y for _, y in points], 1.1), title, ylabel, list(lines))
    xs = [x for x, _ in points] or [0.0, 1.0]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1.0

    def px(x: float) -> float:
        return LEFT + 10 + (width - LEFT - RIGHT - 20) * (x - x_lo) / (x_hi - x_lo)

    for x in sorted(set(xs)):
        axes.draw.text((px(x) - CHAR * len(f"{x:g}") / 2, axes.bottom + 6), f"{x:g}", fill="black")
    if xlabel:
        axes.draw.text((width - RIGHT - CHAR * len(f"x: {xlabel}"), 22), f"x: {xlabel}", fill=(90, 90, 90))
    for j, line in enumerate(lines.values()):
        colour = COLOURS[j % len(COLOURS)]
        xy = [(px(x), axes.y(y)) for x, y in sorted(line)]
        if len(xy) > 1:
            axes.draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            axes.draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    return axes.save(path)
