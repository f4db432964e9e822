"""Inputs for tests/cli/{predict,train}_command_test.cpp: checkpoints and odd images.

Usage: /usr/bin/python3 tests/reference/interop_cli.py OUTDIR  (the C++ tests run it via reference_dir).

  v1.pth            seeded random-init torchvision maskrcnn_resnet50_fpn (bench/make_checkpoint.py), zip format
  r18.pth           the same recipe on a ResNet-18-FPN with narrow FPN and heads (torchvision
                    MaskRCNN from its own parts, 91 classes): the tests whose behaviour does not
                    depend on depth or width use it, at a fraction of ResNet-50's time
  r18_legacy.pth    r18.pth in the legacy format
  truncated.pth     the first half of r18.pth's bytes
  resnet18_cls.pth  a torchvision resnet18 classification state dict: another architecture
  gray.png          a COCO validation image as 8-bit grayscale (1 channel)
  rgba.png          the same image as RGBA (4 channels, alpha varying)
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")
# reference-inputs: datasets/tiny_coco/val2017/000000037777.jpg

import os
import sys

import torch
import torchvision
from PIL import Image

out_dir = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, os.path.join(repo, "bench"))
import make_checkpoint  # noqa: E402

os.makedirs(out_dir, exist_ok=True)
state = make_checkpoint.make("v1").state_dict()
torch.save(state, os.path.join(out_dir, "v1.pth"))


def make_r18(seed=0):
    # ResNet-18 body (frozen batch norm, as resnet_fpn_backbone builds it) with a 64-channel FPN and
    # heads as narrow as the demo's (64-channel mask convs, 256-wide box MLP): predict reads those
    # widths from the tensor shapes. As make_checkpoint.make, BN statistics are spread and the
    # predictor layers scaled so a random-init model gives detections and non-flat masks.
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    torch.manual_seed(seed)
    body = torchvision.models.resnet18(weights=None, norm_layer=torchvision.ops.FrozenBatchNorm2d)
    backbone = BackboneWithFPN(body, {f"layer{i}": str(i - 1) for i in range(1, 5)}, [64, 128, 256, 512], 64)
    model = MaskRCNN(backbone, num_classes=None, box_head=TwoMLPHead(64 * 7 * 7, 256),
                     box_predictor=FastRCNNPredictor(256, 91), mask_head=MaskRCNNHeads(64, [64] * 4, 1),
                     mask_predictor=MaskRCNNPredictor(64, 64, 91)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torchvision.ops.FrozenBatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.roi_heads.box_predictor.cls_score.weight.mul_(8.0)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(30.0)
    return model


r18 = make_r18().state_dict()
torch.save(r18, os.path.join(out_dir, "r18.pth"))
torch.save(r18, os.path.join(out_dir, "r18_legacy.pth"), _use_new_zipfile_serialization=False)
with open(os.path.join(out_dir, "r18.pth"), "rb") as f:
    data = f.read()
with open(os.path.join(out_dir, "truncated.pth"), "wb") as f:
    f.write(data[: len(data) // 2])
torch.manual_seed(0)
torch.save(torchvision.models.resnet18(weights=None).state_dict(), os.path.join(out_dir, "resnet18_cls.pth"))

source = os.path.join(repo, "datasets", "tiny_coco", "val2017", "000000037777.jpg")
image = Image.open(source).convert("RGB")
image.convert("L").save(os.path.join(out_dir, "gray.png"))
rgba = image.convert("RGBA")
alpha = Image.linear_gradient("L").resize(image.size)
rgba.putalpha(alpha)
rgba.save(os.path.join(out_dir, "rgba.png"))
