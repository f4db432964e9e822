"""torchvision's side of bench/train_bench.cpp: the same Mask R-CNN training step (losses,
backward, SGD with momentum 0.9 and weight decay 1e-4, or AdamW with torch's defaults) on the
weights and batches the C++ program wrote. Prints {"seconds": [per iteration, the first one a warm-up]} as JSON.

usage: /usr/bin/python3 bench/torchvision_train.py WEIGHTS BATCHES THREADS DEPTH NORM SIZE
                        RPN_POST_NMS_TRAIN BOX_BATCH_PER_IMAGE sgd|adamw
"""
import json
import sys
import time

import torch
from torch import nn
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import misc


def main():
    weights, batches, threads, depth, norm, size, post_nms, box_batch, optimizer_kind = sys.argv[1:10]
    torch.set_num_threads(int(threads))
    norm_layer = {"batch": nn.BatchNorm2d, "frozen": misc.FrozenBatchNorm2d}[norm]
    state = torch.load(weights)
    # The widths (torchvision's or narrower) come from the checkpoint's shapes.
    fpn = state["backbone.fpn.layer_blocks.0.0.weight"].shape[0]
    box = state["roi_heads.box_predictor.cls_score.weight"].shape[1]
    mask = state["roi_heads.mask_head.0.0.weight"].shape[0]
    classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    body = getattr(torchvision.models, f"resnet{depth}")(weights=None, norm_layer=norm_layer)
    expansion = 1 if int(depth) < 50 else 4
    in_channels = [64 * expansion * 2 ** i for i in range(4)]
    backbone = BackboneWithFPN(body, {f"layer{i}": str(i - 1) for i in range(1, 5)}, in_channels, fpn)
    model = MaskRCNN(backbone, num_classes=None, min_size=int(size), max_size=int(size),
                     rpn_post_nms_top_n_train=int(post_nms), box_batch_size_per_image=int(box_batch),
                     box_head=TwoMLPHead(fpn * 7 * 7, box), box_predictor=FastRCNNPredictor(box, classes),
                     mask_head=MaskRCNNHeads(fpn, [mask] * 4, 1),
                     mask_predictor=MaskRCNNPredictor(mask, mask, classes))
    model.load_state_dict(state, strict=True)
    model.train()
    if optimizer_kind == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    seconds = []
    for batch in torch.load(batches):
        targets = [{"boxes": b, "labels": l, "masks": m}
                   for b, l, m in zip(batch["boxes"], batch["labels"], batch["masks"])]
        start = time.perf_counter()
        losses = model(list(batch["images"]), targets)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        total.item()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
