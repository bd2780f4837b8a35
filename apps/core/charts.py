"""Charts drawn on the server as inline SVG: no script, no download, no layout shift.

Each chart has a fixed viewBox and scales to its container's width, so the page reserves
its space before anything is drawn. Every bar or point carries a ``<title>`` (the browser's
tooltip, read by screen readers); the pages print the same figures in a table next to it.
Values and pixel positions are Decimals throughout (no float), printed to a tenth of a pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from math import floor, log10

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Distinguishable colours (Okabe-Ito), also for colour-blind readers.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
OTHER_COLOUR = "#9aa5b1"

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[Decimal]
    colour: str = ""


def colours(labels: Sequence[str]) -> dict[str, str]:
    return {
        label: (OTHER_COLOUR if label == "Other" else PALETTE[i % len(PALETTE)])
        for i, label in enumerate(labels)
    }


def nice_ceiling(value: Decimal) -> tuple[Decimal, Decimal]:
    """A round top for the axis at or above ``value`` and its step (4 steps: 1, 2, 2.5 or
    5 times a power of ten)."""
    if value <= 0:
        return Decimal(1), Decimal("0.25")
    raw = value / 4
    power = Decimal(10) ** floor(log10(raw))
    for factor in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        step = factor * power
        if step * 4 >= value:
            return step * 4, step
    return power * 40, power * 10  # pragma: no cover - factor 10 always fits


def _slot(count: int) -> Decimal:
    return Decimal(WIDTH - LEFT - RIGHT) / max(1, count)


def _y(value: Decimal, top: Decimal) -> Decimal:
    plot = Decimal(HEIGHT - TOP - BOTTOM)
    return TOP + plot - value / top * plot


def _axis(top: Decimal, step: Decimal, fmt: Callable[[Decimal], str]) -> list[str]:
    parts = []
    tick = Decimal(0)
    while tick <= top:
        y = _y(tick, top)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#d9e2ec" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#52606d">{escape(fmt(tick))}</text>'
        )
        tick += step
    return parts


def _x_labels(days: Sequence[date], slot: Decimal) -> list[str]:
    every = max(1, -(-len(days) // 8))  # at most about eight labels
    parts = []
    for index, day in enumerate(days):
        if index % every == 0 or index == len(days) - 1 and len(days) <= 8:
            x = LEFT + slot * index + slot / 2
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" '
                f'fill="#52606d">{day:%b %-d}</text>'
            )
    return parts


def _svg(parts: list[str], label: str) -> SafeString:
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>"
    )


def stacked_bars(
    days: Sequence[date],
    series: Sequence[Series],
    *,
    fmt: Callable[[Decimal], str],
    label: str,
) -> SafeString:
    """One bar per day, stacked by series (each series one value per day)."""
    totals = [sum((s.values[i] for s in series), Decimal(0)) for i in range(len(days))]
    top, step = nice_ceiling(max(totals, default=Decimal(0)))
    parts = _axis(top, step, fmt)
    slot = _slot(len(days))
    bar = max(Decimal(1), slot * Decimal("0.72"))
    for index, day in enumerate(days):
        x = LEFT + slot * index + (slot - bar) / 2
        base = Decimal(0)
        for item in series:
            value = item.values[index]
            if value <= 0:
                continue
            y_top, y_bottom = _y(base + value, top), _y(base, top)
            parts.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar:.1f}" '
                f'height="{max(Decimal("0.5"), y_bottom - y_top):.1f}" fill="{item.colour}">'
                f"<title>{day:%Y-%m-%d} · {escape(item.label)}: {escape(fmt(value))}</title></rect>"
            )
            base += value
    parts += _x_labels(days, slot)
    return _svg(parts, label)


def spend_line(
    days: Sequence[date],
    cumulative: Sequence[Decimal | None],
    forecast: Sequence[Decimal | None],
    *,
    fmt: Callable[[Decimal], str],
    label: str,
    limit: Decimal | None = None,
) -> SafeString:
    """Spend to date as a solid line and its forecast to the period's end as a dashed one
    (``None`` where a line has no point), with an optional limit drawn across."""
    values = [v for v in (*cumulative, *forecast) if v is not None]
    if limit is not None:
        values.append(limit)
    top, step = nice_ceiling(max(values, default=Decimal(0)))
    parts = _axis(top, step, fmt)
    slot = _slot(len(days))

    def path(points: Sequence[Decimal | None]) -> str:
        coords = [
            f"{LEFT + slot * i + slot / 2:.1f},{_y(v, top):.1f}"
            for i, v in enumerate(points)
            if v is not None
        ]
        return " ".join(coords)

    if limit is not None:
        y = _y(limit, top)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#D55E00" '
            f'stroke-width="1.5" stroke-dasharray="2 3"><title>Limit {escape(fmt(limit))}'
            "</title></line>"
        )
    forecast_points = path(forecast)
    if forecast_points:
        parts.append(
            f'<polyline points="{forecast_points}" fill="none" stroke="#0072B2" '
            'stroke-width="2" stroke-dasharray="6 4" opacity="0.7"/>'
        )
    actual = path(cumulative)
    if actual:
        parts.append(
            f'<polyline points="{actual}" fill="none" stroke="#0072B2" stroke-width="2.5"/>'
        )
    for i, value in enumerate(cumulative):
        if value is not None:
            parts.append(
                f'<circle cx="{LEFT + slot * i + slot / 2:.1f}" cy="{_y(value, top):.1f}" r="3" '
                f'fill="#0072B2"><title>{days[i]:%Y-%m-%d}: {escape(fmt(value))}</title></circle>'
            )
    parts += _x_labels(days, slot)
    return _svg(parts, label)


def horizontal_bars(
    rows: Sequence[tuple[str, Decimal]], *, fmt: Callable[[Decimal], str], label: str
) -> SafeString:
    """One bar per row (label, value), longest first as given; a fixed height per row."""
    width, left, row_height = 720, 170, 26
    height = max(1, len(rows)) * row_height + 8
    top = max((value for _, value in rows), default=Decimal(0)) or Decimal(1)
    parts = []
    for index, (name, value) in enumerate(rows):
        y = 4 + index * row_height
        length = max(Decimal(1), value / top * (width - left - 110))
        parts.append(
            f'<text x="{left - 8}" y="{y + 17}" text-anchor="end" font-size="13" '
            f'fill="#1f2933">{escape(name)}</text>'
            f'<rect x="{left}" y="{y + 4}" width="{length:.1f}" height="18" '
            f'fill="{PALETTE[index % len(PALETTE)]}"><title>{escape(name)}: '
            f"{escape(fmt(value))}</title></rect>"
            f'<text x="{left + length + 6:.1f}" y="{y + 17}" font-size="12" '
            f'fill="#52606d">{escape(fmt(value))}</text>'
        )
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg" '
        f'style="width:100%;height:auto">' + "".join(parts) + "</svg>"
    )
