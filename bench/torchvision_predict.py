"""Times torchvision's Mask R-CNN on the same checkpoint, images and thread count as
bench/predict_bench, and prints one JSON line: {"seconds": [per-image model seconds]}.

usage: /usr/bin/python3 bench/torchvision_predict.py WEIGHTS.pth THREADS MIN_SIZE MAX_SIZE IMG...
"""
import json
import sys
import time

import torch
import torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2


def main():
    weights, threads, min_size, max_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    state = torch.load(weights, map_location="cpu")
    v2 = "rpn.head.conv.1.0.weight" in state
    num_classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    build = maskrcnn_resnet50_fpn_v2 if v2 else maskrcnn_resnet50_fpn
    model = build(weights=None, weights_backbone=None, num_classes=num_classes,
                  min_size=min_size, max_size=max_size).eval()
    model.load_state_dict(state)
    seconds = []
    with torch.inference_mode():
        for path in sys.argv[5:]:
            image = torchvision.io.read_image(path, torchvision.io.ImageReadMode.RGB).float() / 255
            start = time.perf_counter()
            model([image])
            seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
