#!/usr/bin/env python3
"""Training curves of a run folder as one SVG (standard library only), for the tutorial's figures.

Left: the training loss of every log record of RUN/log.jsonl (and its five terms, thin); right: the
validation box and mask AP (COCO AP@[.5:.95], stats[0]) at each validation. The numbers drawn are
the log's own; nothing is smoothed.

Usage: plot_run_curves.py RUN_DIR OUT.svg TITLE
"""
import json
import sys

W, H, PAD = 380, 260, 48  # one panel
TERMS = [("loss_classifier", "#1f77b4"), ("loss_box_reg", "#ff7f0e"), ("loss_mask", "#2ca02c"),
         ("loss_objectness", "#9467bd"), ("loss_rpn_box_reg", "#8c564b")]


def nice_max(v):
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10):
        if v <= step * 5:
            return step * 5, step
    return v, v / 5


def panel(x0, title, x_max, y_max, y_step, series, y_label):
    out = [f'<g transform="translate({x0},0)">',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-weight="bold">{title}</text>']
    px = lambda x: PAD + (W - PAD - 12) * x / x_max
    py = lambda y: H - PAD + 8 - (H - PAD - 30) * min(y, y_max) / y_max
    k = 0
    while k * y_step <= y_max + 1e-9:
        y = k * y_step
        out.append(f'<line x1="{PAD}" x2="{W - 12}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{PAD - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        k += 1
    for frac in (0, 0.25, 0.5, 0.75, 1):
        x = round(x_max * frac)
        out.append(f'<text x="{px(x):.1f}" y="{H - PAD + 24}" text-anchor="middle">{x}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">iteration</text>')
    out.append(f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{y_label}</text>')
    legend_y = 34
    for label, colour, width, points in series:
        if not points:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{path}"/>')
        if len(points) < 12:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in points]
        out.append(f'<text x="{W - 16}" y="{legend_y}" text-anchor="end" fill="{colour}">{label}</text>')
        legend_y += 14
    out.append("</g>")
    return out


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    run, out_path, title = sys.argv[1:]
    train, val = [], []
    with open(f"{run}/log.jsonl") as f:
        for line in f:
            r = json.loads(line)
            (train if r.get("type") == "train" else val if r.get("type") == "val" else []).append(r)
    x_max = max([r["iteration"] for r in train + val] + [1])
    loss_max, loss_step = nice_max(max([r["loss"] for r in train] + [0.1]))
    ap_max, ap_step = nice_max(max([max(r["bbox"][0], r["segm"][0]) for r in val] + [0.05]))
    losses = [("loss", "#000", 2, [(r["iteration"], r["loss"]) for r in train])]
    losses += [(name[5:], colour, 1, [(r["iteration"], r[name]) for r in train if name in r]) for name, colour in TERMS]
    aps = [("box AP", "#1f77b4", 2, [(r["iteration"], r["bbox"][0]) for r in val]),
           ("mask AP", "#d62728", 2, [(r["iteration"], r["segm"][0]) for r in val])]
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 24}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{W}" y="{H + 18}" text-anchor="middle" fill="#555">{title}</text>']
    svg += panel(0, "training loss (log.jsonl)", x_max, loss_max, loss_step, losses, "loss")
    svg += panel(W, "validation AP@[.5:.95] (log.jsonl)", x_max, ap_max, ap_step, aps, "AP")
    svg.append("</svg>")
    with open(out_path, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
