"""torchvision's side of bench/train_bench.cpp: the same Mask R-CNN training step (losses,
backward, SGD with momentum 0.9 and weight decay 1e-4, or AdamW with torch's defaults) on the
weights and batches the C++ program wrote, fp32, timed per phase.

Phases per iteration, as train_bench times its own:
  data       unpacking the pre-made batch (already in memory, loaded from BATCHES before the
             loop) into the list of images and list of target dicts torchvision takes. No image is
             generated or read here: instseg made the batches. Resizing, normalising and padding
             happen inside the model's forward (GeneralizedRCNNTransform), as on our side.
  forward    model(images, targets) and the sum of its loss dict
  backward   total.backward()
  optimizer  optimizer.zero_grad() + optimizer.step()
Prints one JSON object: {"phases": {phase: [seconds per iteration, the first a warm-up]},
"losses": [per iteration], "trainable_parameters": N, "parameter_tensors": N, "model": "..."}.

The backbone is built as maskrcnn_resnet50_fpn builds it: torchvision's _resnet_fpn_extractor
freezes all but the last `trainable_layers` ResNet stages (the same function, not a copy); with an
FPN narrower than torchvision's fixed 256 the frozen body gets a BackboneWithFPN of that width.

usage: /usr/bin/python3 bench/torchvision_train.py WEIGHTS BATCHES --threads T --depth D
           --norm batch|frozen --size S --rpn-post-nms N --box-batch N --optimizer sgd|adamw
           --trainable-layers N --lr LR
"""
import argparse
import json
import time

import torch
from torch import nn
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import misc


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("batches")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--norm", choices=["batch", "frozen"], required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--rpn-post-nms", type=int, required=True)
    parser.add_argument("--box-batch", type=int, required=True)
    parser.add_argument("--optimizer", choices=["sgd", "adamw"], required=True)
    parser.add_argument("--trainable-layers", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--returned-layers", default="1,2,3,4", help="ResNet stages feeding the FPN, e.g. 1,2,3")
    return parser.parse_args()


def build_model(args, state):
    norm_layer = {"batch": nn.BatchNorm2d, "frozen": misc.FrozenBatchNorm2d}[args.norm]
    # The widths (torchvision's or narrower) and the class count come from the checkpoint's shapes.
    fpn = state["backbone.fpn.layer_blocks.0.0.weight"].shape[0]
    box = state["roi_heads.box_predictor.cls_score.weight"].shape[1]
    mask = state["roi_heads.mask_head.0.0.weight"].shape[0]
    classes = state["roi_heads.box_predictor.cls_score.weight"].shape[0]
    body = getattr(torchvision.models, f"resnet{args.depth}")(weights=None, norm_layer=norm_layer)
    returned = [int(i) for i in args.returned_layers.split(",")]
    # freezes body's early stages in place
    backbone = _resnet_fpn_extractor(body, args.trainable_layers, returned_layers=returned)
    if fpn != backbone.out_channels:
        in_channels = [body.inplanes // 8 * 2 ** (i - 1) for i in returned]
        backbone = BackboneWithFPN(body, {f"layer{i}": str(k) for k, i in enumerate(returned)}, in_channels, fpn)
    # One anchor size per map (the returned layers' and "pool"), torchvision's sizes from 32 up.
    levels = len(returned) + 1
    anchors = AnchorGenerator(tuple((32 << k,) for k in range(levels)), ((0.5, 1.0, 2.0),) * levels)
    model = MaskRCNN(backbone, num_classes=None, min_size=args.size, max_size=args.size, rpn_anchor_generator=anchors,
                     rpn_post_nms_top_n_train=args.rpn_post_nms, box_batch_size_per_image=args.box_batch,
                     box_head=TwoMLPHead(fpn * 7 * 7, box), box_predictor=FastRCNNPredictor(box, classes),
                     mask_head=MaskRCNNHeads(fpn, [mask] * 4, 1),
                     mask_predictor=MaskRCNNPredictor(mask, mask, classes))
    model.load_state_dict(state, strict=True)  # a key either side lacks, or a shape, fails here
    description = (f"ResNet-{args.depth}-FPN {fpn}, box head {box}, mask head {mask}, {classes} classes, "
                   f"rpn post-NMS train {model.rpn._post_nms_top_n['training']}, "
                   f"{model.roi_heads.fg_bg_sampler.batch_size_per_image} RoIs per image")
    return model, description


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    model, description = build_model(args, torch.load(args.weights))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]  # as torchvision's reference train.py
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    else:
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    phases = {"data": [], "forward": [], "backward": [], "optimizer": []}
    losses_seen = []
    for batch in torch.load(args.batches):
        t0 = time.perf_counter()
        images = list(batch["images"])
        targets = [{"boxes": b, "labels": l, "masks": m}
                   for b, l, m in zip(batch["boxes"], batch["labels"], batch["masks"])]
        t1 = time.perf_counter()
        losses = model(images, targets)
        total = sum(losses.values())
        t2 = time.perf_counter()
        optimizer.zero_grad()
        t3 = time.perf_counter()
        total.backward()
        t4 = time.perf_counter()
        optimizer.step()
        t5 = time.perf_counter()
        phases["data"].append(t1 - t0)
        phases["forward"].append(t2 - t1)
        phases["backward"].append(t4 - t3)
        phases["optimizer"].append((t3 - t2) + (t5 - t4))
        losses_seen.append(total.item())
    print(json.dumps({
        "phases": phases,
        "losses": losses_seen,
        "trainable_parameters": sum(p.numel() for p in params),
        "parameter_tensors": len(params),
        "model": description,
    }))


if __name__ == "__main__":
    main()
