"""Checks `instseg predict`'s detections against torchvision's on the same checkpoint and images:
every torchvision detection must have an instseg one of the same label at box IoU >= 0.99, with
their score difference printed. Exits 1 when one has none. For benchmark checkpoints (a fast run
is only worth its number if it gives the same answer).

usage: /usr/bin/python3 bench/compare_with_torchvision.py CHECKPOINT.pth v1|v2 PREDICT_OUT_DIR IMAGE_DIR
  PREDICT_OUT_DIR: the --out of `instseg predict --weights CHECKPOINT.pth --input IMAGE_DIR` (its
  predictions.json; default 800/1333 px, score 0.05, 100 detections, as torchvision's defaults).
"""
import json
import os
import sys

import torch
from torchvision.io import ImageReadMode, read_image
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.ops import box_iou


def main(checkpoint, variant, predict_out, image_dir):
    build = maskrcnn_resnet50_fpn if variant == "v1" else maskrcnn_resnet50_fpn_v2
    model = build(weights=None, weights_backbone=None).eval()
    model.load_state_dict(torch.load(checkpoint))
    with open(os.path.join(predict_out, "predictions.json")) as f:
        predictions = json.load(f)
    by_file = {}
    for p in predictions:
        by_file.setdefault(p["file_name"], []).append(p)
    total, missing, worst_iou, worst_score = 0, 0, 1.0, 0.0
    for name in sorted(by_file):
        ours = by_file[name]
        image = read_image(os.path.join(image_dir, name), ImageReadMode.RGB).float() / 255
        with torch.no_grad():
            theirs = model([image])[0]
        x, y, w, h = torch.tensor([p["bbox"] for p in ours]).unbind(1)
        iou = box_iou(theirs["boxes"], torch.stack([x, y, x + w, y + h], 1))
        labels = torch.tensor([p["category_id"] for p in ours])
        iou[theirs["labels"][:, None] != labels[None, :]] = -1.0
        best, index = iou.max(1)
        for i in range(len(best)):
            total += 1
            if best[i] < 0.99:
                missing += 1
                continue
            worst_iou = min(worst_iou, float(best[i]))
            worst_score = max(worst_score, abs(ours[int(index[i])]["score"] - float(theirs["scores"][i])))
        print(f"{name}: torchvision {len(best)} detections, instseg {len(ours)}")
    print(f"{total} torchvision detections, {missing} without an instseg one of the same label at "
          f"IoU >= 0.99; matched: lowest IoU {worst_iou:.6f}, largest score difference {worst_score:.2e}")
    return 1 if missing or total == 0 else 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    sys.exit(main(*sys.argv[1:]))
