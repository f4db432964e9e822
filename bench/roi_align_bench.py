"""torchvision side of bench/roi_align_bench.cpp: same sizes, same box recipe, same threads.

Usage: /usr/bin/python3 bench/roi_align_bench.py THREADS REPEATS
Prints one line per case: NAME FORWARD_MS FORWARD_BACKWARD_MS (medians).
"""
import math
import statistics
import sys
import time

import torch
from torchvision.ops import roi_align

threads, repeats = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
IMAGE_H, IMAGE_W, CHANNELS = 800, 1216, 256


def level_rois(num_rois, seed):
    # Log-uniform box sizes 16..600 px, assigned to FPN levels 2..5 as torchvision's LevelMapper.
    g = torch.Generator().manual_seed(seed)
    size = torch.exp(math.log(16) + torch.rand(num_rois, 2, generator=g) * math.log(600 / 16))
    xy = torch.rand(num_rois, 2, generator=g) * torch.tensor([IMAGE_W, IMAGE_H])
    boxes = torch.cat([xy, xy + size], dim=1)
    level = torch.floor(4 + torch.log2(torch.sqrt(size[:, 0] * size[:, 1]) / 224) + 1e-6).clamp(2, 5)
    rois = torch.cat([torch.zeros(num_rois, 1), boxes], dim=1)
    return [rois[level == l] for l in (2, 3, 4, 5)]


def run(features, rois, pooled, backward):
    outs = [roi_align(f, r, (pooled, pooled), 2.0 ** -(l + 2), 2, False)
            for l, (f, r) in enumerate(zip(features, rois))]
    if backward:
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])


def median_ms(fn):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


torch.manual_seed(0)
features = [torch.randn(1, CHANNELS, IMAGE_H >> l, IMAGE_W >> l).requires_grad_(True) for l in (2, 3, 4, 5)]
for name, num_rois, pooled in (("box_head_1000x7x7", 1000, 7), ("mask_head_100x14x14", 100, 14)):
    rois = level_rois(num_rois, seed=1)
    with torch.no_grad():
        fwd = median_ms(lambda: run(features, rois, pooled, False))
    fwd_bwd = median_ms(lambda: run(features, rois, pooled, True))
    print(name, f"{fwd:.3f}", f"{fwd_bwd:.3f}", flush=True)
