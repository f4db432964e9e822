#!/usr/bin/env python3
"""Draws pictures in the style of the demo's generated data, as PNG files, for the tutorial's figures.

The demo's images (src/data/synthetic.cpp) are made in memory and never written to disk, while
`instseg explain` and `instseg predict` read files. This draws the same kind of picture (128x128:
a gradient, striped or noisy background; circles, rectangles, triangles and stars of random colours
with a little noise) from fixed seeds, plus a few pictures built to be hard for the demo model
(shapes smaller than it was trained on, crowded overlapping shapes, colours close to the
background, shapes cut by the border). It is a look-alike of the generator, not a copy of its
random stream: the demo never saw these images.

Usage: make_demo_images.py OUT_DIR   (needs torch and torchvision: /usr/bin/python3 here)
"""
import math
import os
import sys

import torch
from torchvision.io import write_png

SIZE = 128


def background(g, kind):
    c1, c2 = torch.rand(3, generator=g), torch.rand(3, generator=g)
    angle = float(torch.rand(1, generator=g)) * math.pi
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    along = xs * math.cos(angle) + ys * math.sin(angle)
    grain = 0.04
    if kind == "gradient":
        t = (along - along.min()) / (along.max() - along.min())
        img = c1[:, None, None] * (1 - t) + c2[:, None, None] * t
    elif kind == "stripes":
        half_period = 4 + 12 * float(torch.rand(1, generator=g))
        odd = (torch.floor(along / half_period) % 2) != 0
        img = torch.where(odd, c1[:, None, None], c2[:, None, None])
    else:  # flat colour with strong noise
        img = c1[:, None, None].expand(3, SIZE, SIZE).clone()
        grain = 0.12
    return img + (torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1) * grain


def inside_polygon(points):
    """Pixel centres inside the polygon (even-odd rule), as a [SIZE, SIZE] bool mask."""
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    n = len(points)
    for k in range(n):
        (x0, y0), (x1, y1) = points[k], points[(k + 1) % n]
        if y0 == y1:
            continue
        crosses = (ys >= min(y0, y1)) & (ys < max(y0, y1))
        x_at = x0 + (ys - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xs < x_at)
    return inside


def shape_mask(g, shape, cx, cy, size):
    r, rot = size / 2, float(torch.rand(1, generator=g)) * 2 * math.pi
    polar = lambda radius, a: (cx + radius * math.cos(rot + a), cy + radius * math.sin(rot + a))
    if shape == "circle":
        ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if shape == "rectangle":
        a = (0.25 + 0.25 * float(torch.rand(1, generator=g))) * math.pi / 2
        return inside_polygon([polar(r, t) for t in (a, math.pi - a, math.pi + a, -a)])
    if shape == "triangle":
        return inside_polygon([polar(r, 0), polar(r, 2 * math.pi / 3), polar(r, 4 * math.pi / 3)])
    inner = r * 0.47  # star
    return inside_polygon([polar(inner if k % 2 else r, k * math.pi / 5) for k in range(10)])


def paint(g, img, mask, colour=None, min_distance=0.4):
    under = img[:, mask].mean(dim=1)
    if colour is None:
        colour = torch.rand(3, generator=g)
        for _ in range(8):
            if (colour - under).abs().sum() >= min_distance:
                break
            colour = torch.rand(3, generator=g)
    noise = (torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1) * 0.03
    return torch.where(mask[None], colour[:, None, None] + noise, img)


# name: (seed, background, [(shape, cx, cy, diameter as a fraction of the side)], colour rule)
PICTURES = {
    # A typical validation-like picture: 3 shapes of 25-50% of the side, well apart.
    "demo_shapes": (3, "gradient", [("star", 0.30, 0.32, 0.42), ("circle", 0.72, 0.30, 0.34),
                                    ("triangle", 0.50, 0.74, 0.40)], "contrast"),
    # Shapes of 8-14% of the side: the demo trained on 25-50% only.
    "hard_small": (11, "gradient", [("circle", 0.25, 0.25, 0.10), ("star", 0.70, 0.30, 0.14),
                                    ("rectangle", 0.30, 0.72, 0.12), ("triangle", 0.72, 0.75, 0.08)], "contrast"),
    # Seven shapes overlapping: more than the 1-4 of validation, and heavily occluded.
    "hard_crowded": (12, "stripes", [("circle", 0.30, 0.30, 0.40), ("rectangle", 0.45, 0.40, 0.40),
                                     ("star", 0.65, 0.35, 0.42), ("triangle", 0.35, 0.65, 0.38),
                                     ("circle", 0.60, 0.65, 0.35), ("star", 0.80, 0.75, 0.30),
                                     ("rectangle", 0.20, 0.85, 0.30)], "contrast"),
    # Shapes whose colour is close to the background under them.
    "hard_low_contrast": (13, "noise", [("star", 0.35, 0.40, 0.45), ("rectangle", 0.70, 0.65, 0.40)], "close"),
    # Shapes cut by the border: only part of each is visible.
    "hard_border": (14, "gradient", [("circle", 0.02, 0.50, 0.50), ("star", 0.60, 0.00, 0.50),
                                     ("triangle", 0.98, 0.90, 0.45)], "contrast"),
}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, (seed, kind, shapes, colours) in PICTURES.items():
        g = torch.Generator().manual_seed(seed)
        img = background(g, kind)
        for shape, fx, fy, fsize in shapes:
            mask = shape_mask(g, shape, fx * SIZE, fy * SIZE, fsize * SIZE)
            if not mask.any():
                continue
            colour = None
            if colours == "close":  # a colour 0.12 away (sum over channels) from what lies under it
                colour = (img[:, mask].mean(dim=1) + 0.04).clamp(0, 1)
            img = paint(g, img, mask, colour)
        pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8)
        write_png(pixels, os.path.join(out, name + ".png"))


if __name__ == "__main__":
    main()
