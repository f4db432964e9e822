"""Interop check for tests/engine/interop_test.cpp: a model trained by instseg loads in torchvision
with load_state_dict(strict=True), and its detections there are written for the C++ test to compare.

usage: /usr/bin/python3 tests/reference/interop.py MODEL.pth IMAGE.png [IMAGE.png ...] OUT.pt

The model is the engine tests' tiny configuration (tests/engine/tiny_training.h): Mask R-CNN v1 on
a ResNet-18-FPN backbone with trainable BatchNorm2d, 5 classes (4 shapes + background), images
resized to min_size 128 / max_size 128, 100 RPN proposals after NMS, 64 RoIs sampled per image.
OUT.pt holds boxes_<i>, scores_<i>, labels_<i>, masks_<i> for image i (argument order).
Exits non-zero (with torch's message) when the state dict does not load strictly.
"""
import sys

import torch
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone


def build():
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=torch.nn.BatchNorm2d,
                                   trainable_layers=5)
    return MaskRCNN(backbone, num_classes=5, min_size=128, max_size=128,
                    rpn_post_nms_top_n_train=100, rpn_post_nms_top_n_test=100,
                    box_batch_size_per_image=64, box_detections_per_img=100)


def main():
    model_path, images, out_path = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
    torch.set_num_threads(2)
    model = build()
    state = torch.load(model_path, map_location="cpu")
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
