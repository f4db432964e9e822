"""Reference values for the Mask R-CNN RoI heads, mask pasting and the whole model (v1 and v2).

Usage: /usr/bin/python3 end_to_end.py OUTDIR

Random-init torchvision models are made to give meaningful outputs: BatchNorm running statistics
and affine parameters are randomised (so a port that ignores them fails), and the classifier and
mask logits are rescaled so several classes pass the 0.05 score threshold and masks are not flat.
Writes plain dicts of tensors (torch.save) that the C++ tests read:
  weights_{v1,v2}.pt   state dicts (without num_batches_tracked)
  stages_{v1,v2}.pt    FPN features + proposals of a 2-image batch and each RoI-head stage's output
                       (the pooled and head features for every 4th detection only), and the
                       detections when the 0.05 score threshold, not the 100 cut, decides
  e2e_{v1,v2}.pt       3 images (uint8) and torchvision's final detections: boxes, scores, labels,
                       every detection's 28x28 mask probabilities and every pasted mask binarised at
                       0.5 (bit-packed)
  paste.pt             paste_masks_in_image on hand-made boxes (border-crossing, tiny, large), and
                       the aligned paste as grid_sample computes it
  paste_round_trip.pt  masks of small shapes -> training targets -> torchvision's paste
  levels.pt            MultiScaleRoIAlign level mapping of hand-made boxes
  training_{v1,v2}.pt  RoI-head losses given sampled proposals (explicit indices), also in bfloat16
                       (the features are those of stages_{v1,v2}.pt)
The backbone and RPN weights are rounded to bfloat16-representable values and saved as bfloat16
(half the bytes; the models compute in float32 on exactly those values). The RoI heads' stay
float32: their bfloat16 loss test needs autocast's rounding of the weights as well.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")
# reference-inputs: datasets/tiny_coco/val2017/000000006818.jpg datasets/tiny_coco/val2017/000000017627.jpg datasets/tiny_coco/val2017/000000025560.jpg

import copy
import os
import sys

import torch
import torch.nn.functional as F
import torchvision
from torchvision.io import read_image
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.ops import poolers

from bf16_weights import round_to_bfloat16
from norm_init import randomise_norms

OUT = sys.argv[1]
IMAGES = ["000000006818.jpg", "000000017627.jpg", "000000025560.jpg"]
IMAGE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "tiny_coco", "val2017")
# Sizes used by the C++ tests: the first image at torchvision's defaults for v1 (the one full-size
# end-to-end run; v2 runs it smaller), the other two at half their resolution batched smaller
# (exercises padding and per-image sizes while keeping the test and the pasted masks small).
LARGE = {"v1": (800, 1333), "v2": (512, 853)}
SMALL = {"v1": (384, 640), "v2": (352, 587)}
# The RPN head keeps its default init here (objectness near 0.5), so the last of the 1000
# proposals kept differ by ~1e-5 in score and float rounding can swap one at that cut (v2 at
# 384 px lost a 0.86-score detection that way, from torchvision's 1000th proposal): the sizes
# are ones where no detection comes from a proposal at the cut.
STAGE = (256, 400)
STAGE_PROPOSALS = 150  # per image, for the stage tests
STAGE_ROW_STEP = 4  # the pooled and head features of every 4th RoI
TRAINING_SAMPLE = 64  # RoI-head sample per image in the training reference


def save(name, tensors):
    # clone: torch.save writes a view's whole storage
    torch.save({k: v.clone() for k, v in tensors.items()}, os.path.join(OUT, name))


ROUNDED = ("backbone.", "rpn.")  # the state saved as bfloat16 (see the docstring)


def pack_bits(masks):
    """[K, 1, H, W] probabilities -> [K, ceil(H W / 8)] uint8: pixel p > 0.5 is bit 7 - p % 8 of byte
    p // 8 (row-major), as COCO output thresholds them."""
    bits = (masks > 0.5).flatten(1).to(torch.uint8)
    bits = F.pad(bits, (0, (-bits.shape[1]) % 8)).view(bits.shape[0], -1, 8)
    return (bits << torch.arange(7, -1, -1, dtype=torch.uint8)).sum(2, dtype=torch.uint8)


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    randomise_norms(model, g)


def calibrate(model, image):
    """Rescales the predictors so logits have a useful spread on a real image."""
    seen = {}
    hooks = [
        model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("box", i[0])),
        model.roi_heads.mask_predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("mask", o)),
    ]
    with torch.no_grad():
        model([image])
        pred = model.roi_heads.box_predictor
        # Random features share a large common component; centring the logits on it lets the
        # per-proposal differences pick the class, so detections spread over several labels.
        features = seen["box"].flatten(1)
        mean = features.mean(0)
        for layer, spread in [(pred.cls_score, 3.0), (pred.bbox_pred, 0.3)]:
            layer.weight.mul_(spread / F.linear(features - mean, layer.weight).std())
            layer.bias.copy_(-layer.weight @ mean)
        pred.cls_score.bias[0] += 3.0  # background wins for most proposals, as in a trained model
        model([image])
        conv = model.roi_heads.mask_predictor.mask_fcn_logits
        logits = seen["mask"]
        conv.weight.mul_(3.0 / logits.std())
        conv.bias.copy_(conv.bias * 3.0 / logits.std() - logits.mean((0, 2, 3)) * 3.0 / logits.std())
    for h in hooks:
        h.remove()


def load_image(name):
    """uint8 [3, H, W]; the model's input is image.float() / 255."""
    return read_image(os.path.join(IMAGE_DIR, name))


def set_size(model, size):
    model.transform.min_size = (size[0],)
    model.transform.max_size = size[1]


def state_dict(model):
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def stages(model, images):
    """Runs transform, backbone and RPN, then each RoI-head stage on a subset of the proposals."""
    rh = model.roi_heads
    out = {}
    with torch.no_grad():
        image_list, _ = model.transform(images)
        features = model.backbone(image_list.tensors)
        proposals, _ = model.rpn(image_list, features)
        proposals = [p[:STAGE_PROPOSALS] for p in proposals]
        sizes = image_list.image_sizes
        for name in ["0", "1", "2", "3"]:
            out["feat_" + name] = features[name]
        out["image_sizes"] = torch.tensor(sizes, dtype=torch.int64)
        for i, p in enumerate(proposals):
            out[f"proposals_{i}"] = p
        box_pool = rh.box_roi_pool(features, proposals, sizes)
        box_feat = rh.box_head(box_pool)
        class_logits, box_regression = rh.box_predictor(box_feat)
        out.update(class_logits=class_logits, box_regression=box_regression)
        boxes, scores, labels = rh.postprocess_detections(class_logits, box_regression, proposals, sizes)
        for i in range(len(boxes)):
            out[f"det_boxes_{i}"], out[f"det_scores_{i}"], out[f"det_labels_{i}"] = boxes[i], scores[i], labels[i]
        mask_pool = rh.mask_roi_pool(features, boxes, sizes)
        mask_feat = rh.mask_head(mask_pool)
        mask_logits = rh.mask_predictor(mask_feat)
        probs = tv_roi_heads.maskrcnn_inference(mask_logits, labels)
        for i, p in enumerate(probs):
            out[f"det_masks_{i}"] = p
        # The pooled and head features are large ([K, 256, 14, 14]); the stage tests take every
        # 4th detection (pooling and the head work per box), the full forward covers the rest.
        sub = [b[::STAGE_ROW_STEP] for b in boxes]
        for i, b in enumerate(sub):
            out[f"sub_boxes_{i}"] = b
        sub_rows = torch.cat([torch.arange(0, len(b), STAGE_ROW_STEP) + sum(map(len, boxes[:i]))
                              for i, b in enumerate(boxes)])
        out.update(mask_pool=rh.mask_roi_pool(features, sub, sizes), sub_labels=torch.cat(labels)[sub_rows],
                   sub_masks=torch.cat(probs)[sub_rows])
        assert torch.equal(out["mask_pool"], mask_pool[sub_rows])
        out["mask_feat"] = mask_feat[sub_rows]
        box_rows = torch.arange(0, box_pool.shape[0], STAGE_ROW_STEP)
        out.update(box_pool=box_pool[box_rows], box_feat=box_feat[box_rows], box_rows=box_rows)
        # With no cap on the count (torchvision keeps 100), the 0.05 score threshold decides which
        # candidates survive: scores of 100 detections all lie far above it.
        rh.detections_per_img = 100000
        uncapped = rh.postprocess_detections(class_logits, box_regression, proposals, sizes)
        rh.detections_per_img = 100
        for i, (b, s, l) in enumerate(zip(*uncapped)):
            out[f"all_boxes_{i}"], out[f"all_scores_{i}"], out[f"all_labels_{i}"] = b, s, l
            assert s.min() < 0.06 and len(b) > 100, "the score threshold should decide"
        # The whole RoI-heads forward on the same inputs must agree with the stage-by-stage path.
        result, _ = rh(features, proposals, sizes)
        assert all(torch.equal(r["boxes"], b) for r, b in zip(result, boxes))
    return out


def end_to_end(model, images, large, small):
    """Detections of the first image alone at `large`, and of the other two at half resolution
    batched at `small`; every detection's 28x28 probabilities (what the RoI heads hand to the
    paste) and every pasted mask, binarised."""
    box_masks = []
    hook = model.roi_heads.register_forward_hook(
        lambda m, i, o: box_masks.extend(r["masks"].clone() for r in o[0]))  # pasted in place later
    images = [images[0]] + [im[:, ::2, ::2].contiguous() for im in images[1:]]
    with torch.no_grad():
        set_size(model, large)
        results = model([images[0].float() / 255])
        set_size(model, small)
        results += model([im.float() / 255 for im in images[1:]])
    hook.remove()
    out = {}
    for i, (image, r, m) in enumerate(zip(images, results, box_masks)):
        out[f"image_{i}"] = image
        out[f"boxes_{i}"], out[f"scores_{i}"], out[f"labels_{i}"] = r["boxes"], r["scores"], r["labels"]
        out[f"box_masks_{i}"] = m
        out[f"mask_bits_{i}"] = pack_bits(r["masks"])
        assert m.shape == (len(r["boxes"]), 1, 28, 28) and r["masks"].shape[-2:] == image.shape[-2:]
    return out


def paste_case():
    g = torch.Generator().manual_seed(3)
    h, w = 60, 80
    boxes = torch.tensor(
        [
            [10.0, 12.0, 50.0, 40.0],  # inside
            [-8.6, -5.2, 20.3, 18.9],  # crosses the top-left corner (negative truncation)
            [60.2, 45.5, 95.0, 70.0],  # crosses the bottom-right corner
            [30.0, 30.0, 30.4, 30.3],  # smaller than a pixel
            [0.0, 0.0, 80.0, 60.0],  # the whole image
            [5.5, 40.25, 77.75, 41.0],  # thin
        ]
    )
    masks = torch.rand(len(boxes), 1, 28, 28, generator=g)
    pasted = tv_roi_heads.paste_masks_in_image(masks, boxes, (h, w), padding=1)
    return {"masks": masks, "boxes": boxes, "size": torch.tensor([h, w]), "pasted": pasted,
            "pasted_aligned": grid_sample_paste(masks, boxes, h, w)}


def grid_sample_paste(masks, boxes, h, w):
    """Pixel x reads mask cell coordinate (x - x1) M / max(x2 - x1, 1) - 0.5: where training's
    target (roi_align, aligned=False) sampled the ground truth for it. Zero beyond the mask."""
    out = []
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.double()):
        gx = 2 * (torch.arange(w, dtype=torch.double) - x1) / max(x2 - x1, 1.0) - 1
        gy = 2 * (torch.arange(h, dtype=torch.double) - y1) / max(y2 - y1, 1.0) - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # [1, h, w, (x, y)]
        out.append(F.grid_sample(mask[None].double(), grid, mode="bilinear", padding_mode="zeros",
                                 align_corners=False)[0].float())
    return torch.stack(out) if out else torch.zeros(0, 1, h, w)


def round_trip_case():
    """Ground-truth masks of small shapes -> their 28x28 training targets (torchvision's
    project_masks_on_boxes on the exact box) -> pasted back by torchvision."""
    h, w = 96, 128
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float), torch.arange(w, dtype=torch.float), indexing="ij")
    shapes = [
        ((xx - 30.3) ** 2 + (yy - 40.6) ** 2 <= 17.2**2),  # disc, 34 px
        ((xx - 80.0).abs() + (yy - 50.0).abs() <= 21.0),  # diamond, 42 px
        ((xx >= 60) & (xx < 107) & (yy >= 8) & (yy < 31)),  # rectangle 47 x 23
        ((xx - 25.0) ** 2 / 14.0**2 + (yy - 75.0) ** 2 / 9.0**2 <= 1),  # ellipse
    ]
    gt = torch.stack(shapes).to(torch.uint8)
    boxes = torchvision.ops.masks_to_boxes(gt).float()
    boxes[:, 2:] += 1  # COCO's (x, y, x + w, y + h): the far edge of the last pixel
    targets = tv_roi_heads.project_masks_on_boxes(gt, boxes, torch.arange(len(boxes)), 28)
    pasted = tv_roi_heads.paste_masks_in_image(targets[:, None], boxes, (h, w), padding=1)
    return {"gt": gt, "boxes": boxes, "targets": targets, "pasted": pasted}


def levels_case():
    # Sides around the level boundaries 112, 224, 448 (levels 3|4|5) and beyond the clamps.
    sides = torch.tensor([8.0, 56.0, 111.9, 112.0, 160.0, 223.99, 224.0, 447.0, 448.0, 900.0, 2000.0])
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], dim=1)
    boxes = torch.cat([boxes, torch.tensor([[3.0, 4.0, 70.0, 400.0], [0.0, 0.0, 0.0, 0.0]])])
    mapper = poolers.initLevelMapper(2, 5)
    return {"boxes": boxes, "levels": mapper([boxes]) + 2}


def make_targets(sizes, proposals, seed):
    """Three ground-truth objects per image near RPN proposals (so some proposals match), each with
    an elliptical mask inside its box, at the resized image size (as the transform leaves them)."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for (h, w), p in zip(sizes, proposals):
        boxes = p[[0, 5, 11]] + torch.randn(3, 4, generator=g) * 2.0
        boxes = torchvision.ops.clip_boxes_to_image(boxes, (h, w))
        ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
        xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
        masks = []
        for x1, y1, x2, y2 in boxes.tolist():
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 1), max((y2 - y1) / 2, 1)
            masks.append((((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).to(torch.uint8))
        labels = torch.randint(1, 91, (3,), generator=g)
        targets.append({"boxes": boxes, "labels": labels, "masks": torch.stack(masks)})
    return targets


def training(model, images, seed, stage_features):
    """RoI-head losses in training mode for the proposals torchvision sampled, saved with the
    sample (explicit indices) so the C++ losses can be fed the same rows."""
    rh = model.roi_heads
    out = {}
    with torch.no_grad():
        image_list, _ = model.transform(images)
        features = model.backbone(image_list.tensors)
        proposals, _ = model.rpn(image_list, features)
    proposals = [p[:STAGE_PROPOSALS].clone() for p in proposals]
    sizes = image_list.image_sizes
    assert all(torch.equal(features[n], stage_features["feat_" + n]) for n in ["0", "1", "2", "3"])
    targets = make_targets(sizes, proposals, seed)
    # The features and sizes are stages()'s (same model, images and size): the test reads them there.
    out["image_sizes"] = torch.tensor(sizes, dtype=torch.int64)
    for i, t in enumerate(targets):
        out[f"gt_boxes_{i}"], out[f"gt_labels_{i}"], out[f"gt_masks_{i}"] = t["boxes"], t["labels"], t["masks"]

    model.train()  # BatchNorm in the v2 heads uses batch statistics, as in training
    # A sample smaller than the proposals (16 of ~20 positives, 48 of ~130 negatives per image),
    # so the sampler really chooses; the C++ test sets the same batch size.
    rh.fg_bg_sampler.batch_size_per_image = TRAINING_SAMPLE
    torch.manual_seed(seed)
    sampled, matched, labels, regression_targets = rh.select_training_samples(list(proposals), targets)
    for i in range(len(images)):
        out[f"sampled_proposals_{i}"], out[f"sampled_matched_{i}"] = sampled[i], matched[i]
        out[f"sampled_labels_{i}"], out[f"regression_targets_{i}"] = labels[i], regression_targets[i]
    box_features = rh.box_head(rh.box_roi_pool(features, sampled, sizes))
    class_logits, box_regression = rh.box_predictor(box_features)
    loss_classifier, loss_box_reg = tv_roi_heads.fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
    positive = [torch.where(lab > 0)[0] for lab in labels]
    mask_proposals = [p[k] for p, k in zip(sampled, positive)]
    mask_matched = [m[k] for m, k in zip(matched, positive)]
    mask_logits = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(features, mask_proposals, sizes)))
    loss_mask = tv_roi_heads.maskrcnn_loss(
        mask_logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets], mask_matched
    )
    # The module's own training forward draws the same sample under the same seed.
    torch.manual_seed(seed)
    _, losses = rh(features, list(proposals), sizes, targets)
    assert torch.allclose(losses["loss_mask"], loss_mask)
    out.update(loss_classifier=loss_classifier, loss_box_reg=loss_box_reg, loss_mask=loss_mask)
    # The same sample with the heads under CPU autocast to bfloat16 and the losses computed from
    # their outputs cast up (instseg's optim.precision=bf16).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        class_logits, box_regression = rh.box_predictor(rh.box_head(rh.box_roi_pool(features, sampled, sizes)))
        mask_logits = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(features, mask_proposals, sizes)))
    assert mask_logits.dtype == torch.bfloat16
    out["bf16_loss_classifier"], out["bf16_loss_box_reg"] = tv_roi_heads.fastrcnn_loss(
        class_logits.float(), box_regression.float(), labels, regression_targets)
    out["bf16_loss_mask"] = tv_roi_heads.maskrcnn_loss(
        mask_logits.float(), mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets], mask_matched
    )
    out["mask_targets"] = torch.cat(
        [tv_roi_heads.project_masks_on_boxes(t["masks"], p, m, 28) for t, p, m in zip(targets, mask_proposals, mask_matched)]
    )
    return {k: v.detach() for k, v in out.items()}


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    images = [load_image(n) for n in IMAGES]  # uint8
    scaled = [im.float() / 255.0 for im in images]
    save("paste.pt", paste_case())
    save("paste_round_trip.pt", round_trip_case())
    save("levels.pt", levels_case())
    for tag, builder, seed in [("v1", maskrcnn_resnet50_fpn, 1), ("v2", maskrcnn_resnet50_fpn_v2, 2)]:
        torch.manual_seed(seed)
        model = builder(weights=None, weights_backbone=None).eval()
        randomise(model, seed)
        set_size(model, STAGE)
        calibrate(model, scaled[0])
        round_to_bfloat16(model, ROUNDED)
        save(f"weights_{tag}.pt", {k: v.bfloat16() if k.startswith(ROUNDED) else v for k, v in state_dict(model).items()})
        stage = stages(model, scaled[1:])
        save(f"stages_{tag}.pt", stage)
        # A copy: training mode updates the BatchNorm running statistics of the v2 heads.
        save(f"training_{tag}.pt", training(copy.deepcopy(model), scaled[1:], seed, stage))
        save(f"e2e_{tag}.pt", end_to_end(model, images, LARGE[tag], SMALL[tag]))


if __name__ == "__main__":
    main()
