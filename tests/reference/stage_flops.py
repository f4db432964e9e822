"""FLOP per stage of torchvision's Mask R-CNN, counted from the layers it actually runs, for
tests/engine/stage_flops_test.cpp (engine/stage_flops.h counts them from the options instead).

Usage: /usr/bin/python3 tests/reference/stage_flops.py OUTDIR

Forward hooks on every Conv2d, ConvTranspose2d and Linear add 2 * multiply-adds of the call
(Conv2d: 2 * Cin/groups * Cout * KH * KW * Hout * Wout per image; ConvTranspose2d: 2 * Cin *
Cout/groups * KH * KW * Hin * Win; Linear: 2 * in * out per row) to the stage that owns the
layer, for one 300x400 image at min_size 320 / max_size 512 (a 320x448 batch), random init,
score threshold 0 so that the mask head runs on 100 detections. Writes flops_v1.pt, flops_v2.pt and
flops_v1_3levels.pt (v1 without layer4: returned_layers [1, 2, 3], 4 anchor sizes):
{stage: float64 tensor, "input_h", "input_w", "proposals", "detections"}. The stage names are
instseg's module-path stages (common/stage_profile.h): box.head holds box_head + box_predictor,
mask.predictor conv5_mask + all 91 classes' logits.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import os
import sys

import torch
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d

STAGES = [
    ("backbone.body.", "backbone.body"),
    ("backbone.fpn.", "backbone.fpn"),
    ("rpn.head.", "rpn.head"),
    ("roi_heads.box_head.", "box.head"),
    ("roi_heads.box_predictor.", "box.head"),
    ("roi_heads.mask_head.", "mask.head"),
    ("roi_heads.mask_predictor.", "mask.predictor"),
]


def stage_of(name):
    for prefix, stage in STAGES:
        if name.startswith(prefix):
            return stage
    raise KeyError(name)


def count(build, out_path):
    torch.manual_seed(0)
    model = build(weights=None, weights_backbone=None, min_size=320, max_size=512, box_score_thresh=0.0).eval()
    flops = {stage: 0.0 for _, stage in STAGES}
    seen = {}

    def hook(name):
        def run(module, inputs, output):
            x = inputs[0]
            if isinstance(module, torch.nn.Conv2d):
                kh, kw = module.kernel_size
                n, _, h, w = output.shape
                macs = n * h * w * module.out_channels * (module.in_channels // module.groups) * kh * kw
            elif isinstance(module, torch.nn.ConvTranspose2d):
                kh, kw = module.kernel_size
                n, _, h, w = x.shape
                macs = n * h * w * module.in_channels * (module.out_channels // module.groups) * kh * kw
            else:
                macs = x.numel() // module.in_features * module.in_features * module.out_features
            flops[stage_of(name)] += 2.0 * macs
            if name == "backbone.body.conv1":
                seen["input"] = x.shape[-2:]
            if name.startswith("roi_heads.box_head.") and "proposals" not in seen:
                seen["proposals"] = x.shape[0]
            if name.startswith("roi_heads.mask_head.") and "detections" not in seen:
                seen["detections"] = x.shape[0]
        return run

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            module.register_forward_hook(hook(name))
    with torch.inference_mode():
        model([torch.rand(3, 300, 400)])
    result = {stage: torch.tensor(f, dtype=torch.float64) for stage, f in flops.items()}
    result["input_h"] = torch.tensor(seen["input"][0])
    result["input_w"] = torch.tensor(seen["input"][1])
    result["proposals"] = torch.tensor(seen["proposals"])
    result["detections"] = torch.tensor(seen["detections"])
    torch.save(result, out_path)


def v1_without_layer4(weights, weights_backbone, **kwargs):
    """v1 with the FPN fed by layer1..layer3 (returned_layers): no layer4, one anchor size per map."""
    del weights, weights_backbone
    body = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[1, 2, 3])
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 4)
    return MaskRCNN(body, num_classes=91, rpn_anchor_generator=anchors, **kwargs)


out_dir = sys.argv[1]
count(v1_without_layer4, os.path.join(out_dir, "flops_v1_3levels.pt"))
count(maskrcnn_resnet50_fpn, os.path.join(out_dir, "flops_v1.pt"))
count(maskrcnn_resnet50_fpn_v2, os.path.join(out_dir, "flops_v2.pt"))
