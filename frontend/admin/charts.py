"""Charts for the admin home, drawn on the server as SVG: no script, no style
attribute (the site's CSP admits neither), labels escaped, a title and a
description for screen readers, and the numbers in a table beside each."""

from __future__ import annotations

from markupsafe import Markup, escape

from backend.runners import format_duration as human_duration

# Distinguishable in colour and in grey (Okabe & Ito's palette).
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    # Every text in ``body`` went through escape(); the rest are numbers.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="w-100 chart" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _nice_max(value: float) -> float:
    """A round number at least ``value``, for an axis' top."""
    if value <= 0:
        return 1
    step = 10 ** (len(str(int(value))) - 1)
    return ((int(value) // step) + 1) * step if value % step else value


def runs_per_day(days: list[str], series: dict[str, list[int]]) -> Markup:
    """Bars of runs per day, stacked by pipeline, with a legend."""
    width, height, left, bottom, top = 720, 240, 40, 40, 12
    plot_w, plot_h = width - left - 10, height - bottom - top
    totals = [sum(values[n] for values in series.values()) for n in range(len(days))]
    peak = _nice_max(max(totals, default=0))
    slot = plot_w / max(len(days), 1)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" '
        f'y2="{top + plot_h}" stroke="#6c757d"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11" '
        f'fill="#6c757d">{peak:g}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11" '
        'fill="#6c757d">0</text>',
    ]
    for n, day in enumerate(days):
        x = left + n * slot + slot * 0.15
        y = top + plot_h
        for index, (name, values) in enumerate(series.items()):
            if not values[n]:
                continue
            bar = plot_h * values[n] / peak
            y -= bar
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{bar:.1f}" fill="{COLOURS[index % len(COLOURS)]}">'
                f"<title>{escape(day)}: {values[n]} {escape(name)}</title></rect>"
            )
        last = n == len(days) - 1
        # A label a week, and the last day's unless it would touch the one before.
        if n % 7 == 0 or (last and n % 7 >= 3):
            body.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h + 14}" '
                f'text-anchor="middle" font-size="11" fill="#6c757d">'
                f"{escape(day[5:])}</text>"
            )
    for index, name in enumerate(series):
        x = left + index * 140
        body.append(
            f'<rect x="{x}" y="{height - 14}" width="10" height="10" '
            f'fill="{COLOURS[index % len(COLOURS)]}"/>'
            f'<text x="{x + 14}" y="{height - 5}" font-size="11">{escape(name)}</text>'
        )
    return _svg(width, height, "Runs submitted per day, by pipeline", body)


def durations(rows) -> Markup:
    """A bar per pipeline: how long its runs took, the median (dark) within the
    95th percentile (light)."""
    width, row_h, left = 720, 26, 150
    height = max(len(rows), 1) * row_h + 24
    peak = max((row.p95 for row in rows), default=0) or 1
    scale = (width - left - 170) / peak  # room for the figures after the bar
    body = []
    for n, row in enumerate(rows):
        y = 6 + n * row_h
        median, slow = escape(human_duration(row.p50)), escape(human_duration(row.p95))
        body.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" font-size="12">'
            f"{escape(row.pipeline)}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{row.p95 * scale:.1f}" height="16" '
            f'fill="#9ec5fe"><title>p95 {slow}</title></rect>'
            f'<rect x="{left}" y="{y + 2}" width="{row.p50 * scale:.1f}" height="16" '
            f'fill="#0a58ca"><title>p50 {median}</title></rect>'
            f'<text x="{left + row.p95 * scale + 6:.1f}" y="{y + 14}" font-size="11" '
            f'fill="#6c757d">{median} / {slow}</text>'
        )
    title = "Run durations by pipeline: median and 95th percentile"
    return _svg(width, height, title, body)
