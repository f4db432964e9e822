"""Reference values for tests/modeling/{matcher,sampler}_test.cpp: torchvision 0.14's
det_utils.Matcher and BalancedPositiveNegativeSampler on seeded inputs.

Usage: /usr/bin/python3 tests/reference/ops_training.py OUTDIR
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import os
import sys

import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import box_iou

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
g = torch.Generator().manual_seed(0)


def random_boxes(n, size=100.0):
    xy = torch.rand(n, 2, generator=g) * size
    return torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * size / 2], dim=1)


# Matcher: 6 ground truths x 300 predictions; the first predictions copy ground truths (IoU 1),
# and two identical predictions share ground truth 5's best IoU (~0.6): the low-quality rule keeps both.
gt = torch.cat([random_boxes(5), torch.tensor([[300.0, 300.0, 340.0, 350.0]])])  # 5 is apart
predictions = torch.cat([gt[:3], random_boxes(295), gt[5:6] + 6, gt[5:6] + 6])
quality = box_iou(gt, predictions)
for high, low, allow, name in ((0.7, 0.3, True, "rpn"), (0.5, 0.5, False, "head"), (0.7, 0.3, False, "rpn_strict")):
    matches = det_utils.Matcher(high, low, allow)(quality)
    torch.save({"quality": quality, "matches": matches,
                "params": torch.tensor([high, low, float(allow)], dtype=torch.float64)},
               os.path.join(out_dir, f"matcher_{name}.pt"))

# Sampler: three images of labels in {-1, 0, 1}: plenty of both, few positives, few negatives.
labels = [torch.randint(-1, 2, (1000,), generator=g),
          torch.where(torch.rand(800, generator=g) < 0.02, 1, torch.randint(-1, 1, (800,), generator=g)),
          torch.where(torch.rand(600, generator=g) < 0.9, 1, -1)]
labels[2][:40] = 0
for batch, fraction, seed in ((256, 0.5, 7), (512, 0.25, 11)):
    torch.manual_seed(seed)  # the sampler draws from the global generator
    pos, neg = det_utils.BalancedPositiveNegativeSampler(batch, fraction)(labels)
    out = {"params": torch.tensor([batch, fraction, seed], dtype=torch.float64)}
    for i, (l, p, n) in enumerate(zip(labels, pos, neg)):
        out[f"labels{i}"], out[f"pos{i}"], out[f"neg{i}"] = l, p, n
    torch.save(out, os.path.join(out_dir, f"sampler_b{batch}.pt"))
