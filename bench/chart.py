#!/usr/bin/env python3
"""Draws the scaling chart from a run of bench/run.py, as a hand-written SVG.

    python3 bench/chart.py build/bench/results.json docs/images/

Reads the "scaling" entry of results.json (the CPU-bound map at 1, 2, 4, ... workers, mproc
and Python) and writes OUT_DIR/scaling.svg: speed-up over serial against the worker count,
one line for mproc, one for Python, and the ideal (speed-up = workers). Standard library
only: no matplotlib.
"""

import argparse
import json
import sys
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 64, 56  # margins around the plot area
SERIES = [  # (key in a point, legend label, colour)
    ("mproc_speedup", "mproc::Pool", "#1f77b4"),
    ("python_speedup", "Python multiprocessing.Pool", "#ff7f0e"),
]


def nice_step(span, most_ticks=8):
    """The smallest tick step of 1, 2 or 5 times a power of ten giving at most most_ticks ticks."""
    steps = sorted(k * 10.0 ** e for e in range(-1, 6) for k in (1, 2, 5))
    return next(step for step in steps if span / step <= most_ticks)


def number(value):
    return f"{value:g}" if value == int(value) else f"{value:.2f}".rstrip("0")


def chart(results):
    scaling = results.get("scaling") or {}
    points = [p for p in scaling.get("points", []) if p.get("workers")]
    if not points:
        raise ValueError("no scaling points in the results (run bench/run.py with the benchmarks built)")
    machine = results.get("machine", {})
    workers = [p["workers"] for p in points]
    x_max = max(workers)
    measured = [p[key] for p in points for key, _, _ in SERIES if isinstance(p.get(key), (int, float))]
    y_max = max([x_max] + measured) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(w):
        return LEFT + plot_w * w / x_max

    def y_of(s):
        return TOP + plot_h * (1 - s / y_max)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    title = "CPU-bound map: speed-up over serial"
    subtitle = (f"{machine.get('cpu_model', 'unknown CPU')}, {machine.get('cores_usable', '?')} CPUs usable; "
                f"Python {machine.get('python', '?')}; {machine.get('date', '')}")
    out.append(f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>')
    out.append(f'<text x="{LEFT}" y="42" fill="#555">{escape(subtitle)}</text>')

    # Grid and y axis ticks.
    step = nice_step(y_max)
    tick = 0.0
    while tick <= y_max:
        y = y_of(tick)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{number(tick)}×</text>')
        tick += step
    for w in workers:
        x = x_of(w)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{w}</text>')
    out.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#333"/>')
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>')
    out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 14}" text-anchor="middle">workers</text>')
    out.append(f'<text transform="translate(18 {TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f'speed-up (serial time ÷ pool time)</text>')

    # The ideal: speed-up = workers, from the origin.
    out.append(f'<line x1="{x_of(0):.1f}" y1="{y_of(0):.1f}" x2="{x_of(x_max):.1f}" y2="{y_of(x_max):.1f}" '
               f'stroke="#999" stroke-dasharray="6 4"/>')

    legend = [("ideal (speed-up = workers)", "#999", True)]
    for key, label, colour in SERIES:
        series = [(p["workers"], p[key]) for p in points if isinstance(p.get(key), (int, float))]
        if not series:
            continue
        path = " ".join(f"{x_of(w):.1f},{y_of(s):.1f}" for w, s in series)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        below = key == "python_speedup"  # keep the two series' labels apart
        for w, s in series:
            out.append(f'<circle cx="{x_of(w):.1f}" cy="{y_of(s):.1f}" r="4" fill="{colour}"/>')
            label_y = y_of(s) + (16 if below else -8)
            out.append(f'<text x="{x_of(w) + 6:.1f}" y="{label_y:.1f}" fill="{colour}">{s:.2f}×</text>')
        legend.append((label, colour, False))

    for i, (label, colour, dashed) in enumerate(legend):
        y = TOP + 12 + 18 * i
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        out.append(f'<line x1="{LEFT + 12}" y1="{y}" x2="{LEFT + 40}" y2="{y}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{LEFT + 46}" y="{y + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="results.json written by bench/run.py")
    parser.add_argument("out_dir", help="folder for scaling.svg (created if missing)")
    args = parser.parse_args()
    try:
        svg = chart(json.loads(Path(args.results).read_text()))
    except (OSError, ValueError) as error:
        sys.exit(f"chart.py: {error}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "scaling.svg"
    target.write_text(svg)
    print(target)


if __name__ == "__main__":
    main()
