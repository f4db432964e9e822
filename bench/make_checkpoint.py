"""Writes a seeded random-init torchvision Mask R-CNN checkpoint for benchmarks (no weights can be
downloaded here), made to behave like a trained model at score threshold 0.05: 1000 proposals
and up to 100 detections per 800 px image, with non-flat masks.

Batch-norm statistics are measured on a few tiny_coco train images (as a trained model's are
measured on its data), which keeps activations near unit scale. With merely random statistics
the activations grow layer by layer, the RPN's objectness peaks in a few spots near the image
border, and NMS leaves 40-80 proposals: a much lighter box and mask head than a real model runs.
The predictor layers are scaled so scores and mask logits spread.

usage: /usr/bin/python3 bench/make_checkpoint.py OUT.pth [v1|v2] [--legacy] [--uncalibrated]
  --uncalibrated  random batch-norm statistics, no measurement: the recipe of the benchmarks
                  recorded before 2026-11-30's stop 25 (and of the interop test's model)
"""
import glob
import os
import sys

import torch
from torchvision.io import ImageReadMode, read_image
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

CALIBRATION_IMAGES = 4


def calibrate_batch_norm(model, paths):
    """Sets every BatchNorm2d's running mean and variance to their averages over `paths`
    (train-mode forward passes of the backbone and RPN head, cumulative averaging)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for path in paths:
            image = read_image(path, ImageReadMode.RGB).float() / 255
            images, _ = model.transform([image])
            features = model.backbone(images.tensors)
            model.rpn.head(list(features.values()))
    for m in norms:
        m.momentum = 0.1
    model.eval()


def make(variant, seed=0, calibrate=False):
    torch.manual_seed(seed)
    build = maskrcnn_resnet50_fpn if variant == "v1" else maskrcnn_resnet50_fpn_v2
    model = build(weights=None, weights_backbone=None).eval()
    with torch.no_grad():
        if calibrate:
            repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            train = sorted(glob.glob(os.path.join(repo, "datasets", "tiny_coco", "train2017", "*.jpg")))
            if len(train) < CALIBRATION_IMAGES:
                sys.exit(f"make_checkpoint: {len(train)} images in datasets/tiny_coco/train2017, "
                         f"{CALIBRATION_IMAGES} needed to measure batch-norm statistics")
            calibrate_batch_norm(model, train[:CALIBRATION_IMAGES])
        else:
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        model.roi_heads.box_predictor.cls_score.weight.mul_(8.0)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(30.0)
    return model


if __name__ == "__main__":
    out = sys.argv[1]
    variant = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else "v1"
    legacy = "--legacy" in sys.argv
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = make(variant, calibrate="--uncalibrated" not in sys.argv)
    torch.save(model.state_dict(), out, _use_new_zipfile_serialization=not legacy)
