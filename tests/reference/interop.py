"""Interop check for tests/engine/interop_test.cpp: a model trained by instseg loads in torchvision
with load_state_dict(strict=True), and its detections there are written for the C++ test to compare.

usage: /usr/bin/python3 tests/reference/interop.py MODEL.pth IMAGE.png [IMAGE.png ...] OUT.pt

The model is the engine tests' tiny configuration (tests/engine/tiny_training.h): Mask R-CNN v1 on
a ResNet-18-FPN backbone with trainable BatchNorm2d, 5 classes (4 shapes + background), images
resized to min_size 128 / max_size 128, 100 RPN proposals after NMS, 64 RoIs sampled per image,
and narrower FPN/box/mask heads than torchvision's defaults, read from the checkpoint's shapes:
torchvision builds such a model from its own parts (BackboneWithFPN, TwoMLPHead, MaskRCNNHeads).
OUT.pt holds boxes_<i>, scores_<i>, labels_<i>, masks_<i> for image i (argument order).
Exits non-zero (with torch's message) when the state dict does not load strictly.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import sys

import torch
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor


def build(state):
    fpn = state["backbone.fpn.layer_blocks.0.0.weight"].shape[0]
    box = state["roi_heads.box_predictor.cls_score.weight"].shape[1]
    mask = state["roi_heads.mask_head.0.0.weight"].shape[0]
    classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    body = torchvision.models.resnet18(weights=None, norm_layer=torch.nn.BatchNorm2d)
    layers = {f"layer{i}": str(i - 1) for i in range(1, 5)}
    backbone = BackboneWithFPN(body, layers, [64, 128, 256, 512], fpn)
    return MaskRCNN(backbone, num_classes=None, min_size=128, max_size=128,
                    rpn_post_nms_top_n_train=100, rpn_post_nms_top_n_test=100,
                    box_batch_size_per_image=64, box_detections_per_img=100,
                    box_head=TwoMLPHead(fpn * 7 * 7, box), box_predictor=FastRCNNPredictor(box, classes),
                    mask_head=MaskRCNNHeads(fpn, [mask] * 4, 1), mask_predictor=MaskRCNNPredictor(mask, mask, classes))


def main():
    model_path, images, out_path = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    torch.set_num_threads(2)
    state = torch.load(model_path, map_location="cpu")
    model = build(state)
    model.load_state_dict(state, strict=True)
    model.eval()
    out = {}
    with torch.no_grad():
        for i, path in enumerate(images):
            image = torchvision.io.read_image(path, torchvision.io.ImageReadMode.RGB).float() / 255.0
            det = model([image])[0]
            out[f"boxes_{i}"] = det["boxes"]
            out[f"scores_{i}"] = det["scores"]
            out[f"labels_{i}"] = det["labels"]
            out[f"masks_{i}"] = det["masks"]
    torch.save(out, out_path)


if __name__ == "__main__":
    main()
