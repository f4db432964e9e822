"""Reference values for tests/ops: inputs and torchvision 0.14 outputs, one .pt file per case.

Usage: /usr/bin/python3 tests/reference/ops.py OUTDIR  (the C++ tests run it via reference_dir).
Each file is torch.save({name: tensor}) of a plain dict.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import os
import sys

import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, nms, remove_small_boxes, roi_align

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)


def save(name, **tensors):
    torch.save(tensors, os.path.join(out_dir, name + ".pt"))


def random_boxes(g, n, width, height, min_size=1.0):
    x1 = torch.rand(n, generator=g) * width
    y1 = torch.rand(n, generator=g) * height
    w = min_size + torch.rand(n, generator=g) * width / 2
    h = min_size + torch.rand(n, generator=g) * height / 2
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


# --- roi_align: aligned x sampling ratio x FPN scale; boxes inside, crossing the border, tiny, empty
IMAGE_H, IMAGE_W = 200, 264
g = torch.Generator().manual_seed(0)
for aligned in (False, True):
    for sampling_ratio in (0, 2):
        for scale_denominator in (4, 8, 16, 32):
            scale = 1.0 / scale_denominator
            h, w = -(-IMAGE_H // scale_denominator), -(-IMAGE_W // scale_denominator)
            features = torch.randn(2, 3, h, w, generator=g)
            inside = random_boxes(g, 12, IMAGE_W * 0.7, IMAGE_H * 0.7, min_size=4.0)
            crossing = random_boxes(g, 8, IMAGE_W * 1.2, IMAGE_H * 1.2, min_size=20.0) - 40.0
            tiny = random_boxes(g, 4, IMAGE_W, IMAGE_H, min_size=0.0) * torch.tensor([1, 1, 1, 1.0])
            tiny[:, 2:] = tiny[:, :2] + torch.rand(4, 2, generator=g) * 0.5
            empty = tiny.clone()
            empty[:, 2:] = empty[:, :2]
            far_outside = torch.tensor([[-300.0, -300.0, -250.0, -260.0], [IMAGE_W + 50.0, 10.0, IMAGE_W + 90.0, 60.0]])
            whole = torch.tensor([[0.0, 0.0, IMAGE_W, IMAGE_H]])
            boxes = torch.cat([inside, crossing, tiny, empty, far_outside, whole])
            batch = torch.randint(0, 2, (boxes.shape[0], 1), generator=g).float()
            rois = torch.cat([batch, boxes], dim=1)
            x = features.clone().requires_grad_(True)
            out = roi_align(x, rois, (7, 5), spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
            grad_output = torch.randn(out.shape, generator=g)
            out.backward(grad_output)
            save(f"roi_align_a{int(aligned)}_s{sampling_ratio}_d{scale_denominator}",
                 input=features, rois=rois, output=out.detach(), grad_output=grad_output,
                 grad_input=x.grad, spatial_scale=torch.tensor(scale, dtype=torch.float64))

# --- nms: random boxes; quantised scores (many exact ties); IoU exactly at the threshold
g = torch.Generator().manual_seed(1)
boxes = random_boxes(g, 300, 100, 80)
scores = torch.rand(300, generator=g)
for t in (0.3, 0.5, 0.7):
    save(f"nms_random_{int(t * 10)}", boxes=boxes, scores=scores, keep=nms(boxes, scores, t),
         threshold=torch.tensor(t, dtype=torch.float64))
tied = torch.round(torch.rand(300, generator=g) * 4) / 4  # five distinct values
save("nms_ties", boxes=boxes, scores=tied, keep=nms(boxes, tied, 0.5), threshold=torch.tensor(0.5, dtype=torch.float64))
# Pairs whose IoU is exactly 0.5 in float (50 / 100), plus a pair just above (and equal scores).
at = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 5], [20, 0, 30, 10], [20, 5, 30, 10],
                   [40, 0, 50, 10], [40, 0, 50, 5.01], [60, 0, 70, 10], [60, 0, 70, 10]], dtype=torch.float32)
at_scores = torch.tensor([0.9, 0.8, 0.7, 0.7, 0.6, 0.5, 0.4, 0.4])
save("nms_at_threshold", boxes=at, scores=at_scores, keep=nms(at, at_scores, 0.5),
     threshold=torch.tensor(0.5, dtype=torch.float64))
assert box_iou(at[:1], at[1:2]).item() == 0.5

# --- batched_nms: below (coordinate trick) and above (per-class loop) torchvision's 1000-box switch
for n, name in ((400, "small"), (2000, "large")):
    b = random_boxes(g, n, 200, 150)
    s = torch.round(torch.rand(n, generator=g) * 50) / 50  # ties, also across groups
    groups = torch.randint(0, 7, (n,), generator=g)
    save(f"batched_nms_{name}", boxes=b, scores=s, groups=groups, keep=batched_nms(b, s, groups, 0.5),
         threshold=torch.tensor(0.5, dtype=torch.float64))

# --- box ops
b1 = random_boxes(g, 40, 100, 100)
b2 = torch.cat([random_boxes(g, 30, 100, 100), torch.tensor([[5.0, 5, 5, 9], [-10, -10, 200, 200]])])
save("box_iou", boxes1=b1, boxes2=b2, iou=box_iou(b1, b2))
wild = random_boxes(g, 50, 140, 120, min_size=0.0) - 20
save("clip_remove", boxes=wild, clipped=clip_boxes_to_image(wild, (90, 110)),
     keep=remove_small_boxes(wild, 3.0))

# --- BoxCoder (RPN weights and box-head weights); decode with C = 3 classes and huge dw/dh
for weights, name in (((1.0, 1.0, 1.0, 1.0), "rpn"), ((10.0, 10.0, 5.0, 5.0), "head")):
    coder = det_utils.BoxCoder(weights)
    proposals = random_boxes(g, 60, 300, 200)
    gt = random_boxes(g, 60, 300, 200)
    deltas = torch.randn(60, 12, generator=g) * 2
    deltas[:5, 2::4] = 50.0  # beyond bbox_xform_clip
    decoded = coder.decode(deltas, [proposals])  # [K, C, 4]
    save(f"box_coder_{name}", proposals=proposals, gt=gt, encoded=coder.encode_single(gt, proposals),
         deltas=deltas, decoded=decoded, weights=torch.tensor(weights, dtype=torch.float64))

# --- batched_nms cut to its first k (the RPN's post-NMS top-n) on both sides of the size switch;
# untied scores, as the cut is only defined up to the order among equal scores above the switch.
for n, name in ((400, "small"), (2000, "large")):
    b = random_boxes(g, n, 200, 150)
    s = torch.rand(n, generator=g)
    groups = torch.randint(0, 7, (n,), generator=g)
    save(f"batched_nms_untied_{name}", boxes=b, scores=s, groups=groups, keep=batched_nms(b, s, groups, 0.7),
         threshold=torch.tensor(0.7, dtype=torch.float64))
