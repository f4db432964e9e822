"""Writes a seeded random-init torchvision Mask R-CNN checkpoint for benchmarks (no weights can be
downloaded here). The predictor layers are scaled so the model emits many detections and
non-flat masks, like a trained model at score threshold 0.05.

usage: /usr/bin/python3 bench/make_checkpoint.py OUT.pth [v1|v2] [--legacy]
"""
import sys

import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2


def make(variant, seed=0):
    torch.manual_seed(seed)
    build = maskrcnn_resnet50_fpn if variant == "v1" else maskrcnn_resnet50_fpn_v2
    model = build(weights=None, weights_backbone=None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.roi_heads.box_predictor.cls_score.weight.mul_(8.0)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(30.0)
    return model


if __name__ == "__main__":
    out = sys.argv[1]
    variant = sys.argv[2] if len(sys.argv) > 2 else "v1"
    legacy = "--legacy" in sys.argv
    torch.save(make(variant).state_dict(), out, _use_new_zipfile_serialization=not legacy)
