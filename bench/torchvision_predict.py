"""Times torchvision's Mask R-CNN on the same checkpoint, images and thread count as
bench/predict_bench, and prints one JSON line:
  {"seconds": [model seconds per image], "stages": [{stage: seconds} per image],
   "detections": [per image], "proposals": [rows the box head ran on, per image],
   "input_sizes": [[H, W] of the padded batch per image],
   "peak_rss_mb": the process's peak resident memory}
The stage names are instseg's (common/stage_profile.h), timed around torchvision's submodules:
transform (its forward: normalise, resize, batch), backbone.body, backbone.fpn, rpn.head,
rpn.proposals (the rest of rpn: anchors, decoding, NMS), box.roi_align (box_roi_pool), box.head
(box_head + box_predictor), box.postprocess (the rest of roi_heads: postprocess_detections and the
glue), mask.roi_align (mask_roi_pool), mask.head (mask_head + mask_predictor), paste
(transform.postprocess). Run it with MALLOC_MMAP_MAX_ / MALLOC_TRIM_THRESHOLD_ set to give it
instseg's memory policy (predict_bench does both).

usage: /usr/bin/python3 bench/torchvision_predict.py WEIGHTS.pth THREADS MIN_SIZE MAX_SIZE IMG...
"""
import json
import resource
import sys
import time
from collections import defaultdict

import torch
import torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

# submodule path -> the stage its time counts towards (rpn and roi_heads: their own rest, below)
TIMED = {
    "transform": "transform",
    "backbone.body": "backbone.body",
    "backbone.fpn": "backbone.fpn",
    "rpn": "rpn",
    "rpn.head": "rpn.head",
    "roi_heads": "roi_heads",
    "roi_heads.box_roi_pool": "box.roi_align",
    "roi_heads.box_head": "box.head",
    "roi_heads.box_predictor": "box.head",
    "roi_heads.mask_roi_pool": "mask.roi_align",
    "roi_heads.mask_head": "mask.head",
    "roi_heads.mask_predictor": "mask.head",
}
ROI_STAGES = ["box.roi_align", "box.head", "mask.roi_align", "mask.head"]


def instrument(model, seconds):
    """Adds each timed submodule's wall time to seconds[stage]."""
    starts = {}
    for name, module in model.named_modules():
        if name not in TIMED:
            continue

        def pre(module, inputs, name=name):
            starts[name] = time.perf_counter()

        def post(module, inputs, output, name=name):
            seconds[TIMED[name]] += time.perf_counter() - starts[name]

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
    # Pasting is GeneralizedRCNNTransform.postprocess, a method rather than a module call.
    postprocess = model.transform.postprocess

    def timed_postprocess(*args, **kwargs):
        start = time.perf_counter()
        result = postprocess(*args, **kwargs)
        seconds["paste"] += time.perf_counter() - start
        return result

    model.transform.postprocess = timed_postprocess
    # The padded batch's size as the backbone sees it, and the proposals the box head runs on.
    sizes, proposals = [], []
    model.backbone.body.register_forward_pre_hook(lambda m, inputs: sizes.append(list(inputs[0].shape[-2:])))
    model.roi_heads.box_head.register_forward_pre_hook(lambda m, inputs: proposals.append(int(inputs[0].shape[0])))
    return sizes, proposals


def stages_of(seconds):
    """instseg's stage names from the raw timers (the rests computed)."""
    stages = {
        "transform": seconds["transform"],
        "backbone.body": seconds["backbone.body"],
        "backbone.fpn": seconds["backbone.fpn"],
        "rpn.head": seconds["rpn.head"],
        "rpn.proposals": seconds["rpn"] - seconds["rpn.head"],
        "box.roi_align": seconds["box.roi_align"],
        "box.head": seconds["box.head"],
        "box.postprocess": seconds["roi_heads"] - sum(seconds[s] for s in ROI_STAGES),
        "mask.roi_align": seconds["mask.roi_align"],
        "mask.head": seconds["mask.head"],
        "paste": seconds["paste"],
    }
    return stages


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
    del state
    raw = defaultdict(float)
    sizes, proposals = instrument(model, raw)
    seconds, stages, detections = [], [], []
    with torch.inference_mode():
        for path in sys.argv[5:]:
            image = torchvision.io.read_image(path, torchvision.io.ImageReadMode.RGB).float() / 255
            raw.clear()
            start = time.perf_counter()
            out = model([image])
            seconds.append(time.perf_counter() - start)
            stages.append(stages_of(raw))
            detections.append(int(out[0]["scores"].shape[0]))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: kilobytes
    print(json.dumps({"seconds": seconds, "stages": stages, "detections": detections, "proposals": proposals,
                      "input_sizes": sizes, "peak_rss_mb": peak_kb / 1024.0}))


if __name__ == "__main__":
    main()
