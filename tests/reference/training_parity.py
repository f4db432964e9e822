"""Reference values for training: RoI training-sample selection and Mask R-CNN's whole loss dict.

Usage: /usr/bin/python3 training_parity.py OUTDIR

Writes plain dicts of tensors (torch.save) that tests/modeling/training_samples_test.cpp reads:
  samples_<case>.pt  proposals + targets per image, the options, the seed, and torchvision's
                     RoIHeads.select_training_samples outputs (sampled proposals, matched indices,
                     labels, regression targets), plus `after`: torch.rand(1) drawn right after the
                     selection, so the C++ side can show it consumed the generator exactly as much.
  model.pt           a ResNet-18-FPN Mask R-CNN (weights=None, BatchNorm statistics randomised,
                     smaller box/mask heads), 2 images with targets, and the loss dict of
                     model.train(); model(images, targets) under torch.manual_seed(seed), with the
                     gradients of the summed loss for a few parameters.
The randomness of training (the transform's scale choice, the RPN and RoI samplers) all comes
from torch's default generator, in this order: scale of each image, RPN positives/negatives per
image, RoI positives/negatives per image.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")
# reference-inputs: datasets/tiny_coco/val2017/000000017627.jpg datasets/tiny_coco/val2017/000000025560.jpg

import os
import sys

import torch
import torchvision
from torchvision.io import read_image
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads

from norm_init import randomise_norms

OUT = sys.argv[1]
IMAGE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "tiny_coco", "val2017")

# Whole-model case; the C++ test builds MaskRcnnOptions with the same values.
NUM_CLASSES = 7
MIN_SIZES = (160, 192, 224)  # several, so the transform's random scale choice is exercised
MAX_SIZE = 320
REPRESENTATION = 256  # box head width (torchvision's 1024 makes a 13M-parameter fc6)
MASK_CHANNELS = 64    # mask head width (torchvision's 256)
MODEL_SEED = 5
LOSS_SEED = 11
GRAD_PARAMS = [
    "backbone.body.layer2.0.conv1.weight",
    "backbone.body.layer3.0.downsample.0.weight",
    "backbone.fpn.layer_blocks.0.0.weight",
    "rpn.head.conv.0.0.weight",
    "rpn.head.bbox_pred.weight",
    "roi_heads.box_head.fc7.bias",
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.mask_head.0.0.weight",
    "roi_heads.mask_predictor.mask_fcn_logits.bias",
]


def save(name, tensors):
    # clone: torch.save writes a view's whole storage
    torch.save({k: v.detach().clone() for k, v in tensors.items()}, os.path.join(OUT, name))


# ---------------------------------------------------------------- select_training_samples cases

def random_boxes(g, n, width, height, min_side=4.0, max_side=120.0):
    x1 = torch.rand(n, generator=g) * (width - min_side)
    y1 = torch.rand(n, generator=g) * (height - min_side)
    w = min_side + torch.rand(n, generator=g) * (max_side - min_side)
    h = min_side + torch.rand(n, generator=g) * (max_side - min_side)
    return torch.stack([x1, y1, (x1 + w).clamp(max=width), (y1 + h).clamp(max=height)], 1)


def jittered(g, gt, copies, scale):
    """`copies` boxes around each GT box: centre moved by `scale` times its size, sides scaled by
    exp(`scale` x normal) (valid boxes, as the RPN's; many overlap >= 0.5)."""
    if gt.numel() == 0:
        return gt.new_zeros((0, 4))
    boxes = gt.repeat_interleave(copies, 0)
    wh = boxes[:, 2:] - boxes[:, :2]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + torch.randn(wh.shape, generator=g) * scale * wh
    wh = wh * torch.exp(torch.randn(wh.shape, generator=g) * scale)
    return torch.cat([centre - wh / 2, centre + wh / 2], 1)


def image_case(g, num_gt, copies, num_random, num_classes=90, size=(320, 256)):
    gt = random_boxes(g, num_gt, *size, min_side=16.0)
    proposals = torch.cat([jittered(g, gt, copies, 0.08), jittered(g, gt, copies, 0.3),
                           random_boxes(g, num_random, *size)])
    proposals = proposals[torch.randperm(proposals.shape[0], generator=g)]  # GT-near boxes interleaved
    labels = torch.randint(1, num_classes + 1, (num_gt,), generator=g)
    return proposals, gt, labels


def ties_image():
    """Exact IoU ties and threshold boundaries (integer coordinates, so the IoUs are exact in fp32):
    two identical GT boxes with different labels (every proposal ties between them), a proposal
    equally good for two different GT boxes, proposals at IoU exactly 0.5 and just below."""
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0],     # 0
                       [10.0, 10.0, 30.0, 30.0],     # 1: duplicate of 0
                       [100.0, 50.0, 120.0, 70.0],   # 2
                       [102.0, 50.0, 122.0, 70.0],   # 3: shifted copy of 2
                       [200.0, 100.0, 240.0, 180.0]])
    labels = torch.tensor([3, 4, 5, 6, 7])
    proposals = torch.tensor([
        [10.0, 10.0, 30.0, 30.0],     # IoU 1 with both 0 and 1
        [10.0, 10.0, 30.0, 50.0],     # IoU exactly 0.5 with 0 and 1: foreground
        [10.0, 10.0, 50.0, 30.0],     # same, other axis
        [10.0, 10.0, 30.0, 50.001],   # IoU just below 0.5: background
        [101.0, 50.0, 121.0, 70.0],   # IoU 380/420 with both 2 and 3
        [200.0, 100.0, 240.0, 260.0],  # IoU exactly 0.5 with 4
        [200.0, 100.0, 240.0, 259.99],  # just above 0.5
        [200.0, 100.0, 280.0, 180.0],  # exactly 0.5
        [0.0, 0.0, 5.0, 5.0],          # disjoint
        [50.0, 50.0, 50.5, 60.0],      # thin
        [205.0, 105.0, 235.0, 175.0],  # inside 4: IoU 30*70/3200
    ])
    return proposals, gt, labels


def select(proposals, gt_boxes, gt_labels, batch_size, positive_fraction, seed):
    heads = RoIHeads(None, None, None, 0.5, 0.5, batch_size, positive_fraction, None, 0.05, 0.5, 100)
    targets = [{"boxes": b, "labels": l} for b, l in zip(gt_boxes, gt_labels)]
    torch.manual_seed(seed)
    sampled, matched, labels, regression = heads.select_training_samples([p.clone() for p in proposals], targets)
    after = torch.rand(1)
    out = {"batch_size": torch.tensor(batch_size), "positive_fraction": torch.tensor(positive_fraction, dtype=torch.float64),
           "seed": torch.tensor(seed), "after": after}
    for i in range(len(proposals)):
        out[f"proposals_{i}"], out[f"gt_boxes_{i}"], out[f"gt_labels_{i}"] = proposals[i], gt_boxes[i], gt_labels[i]
        out[f"sampled_proposals_{i}"], out[f"matched_{i}"] = sampled[i], matched[i]
        out[f"labels_{i}"], out[f"regression_targets_{i}"] = labels[i], regression[i]
        num_pos, num_neg = int((labels[i] > 0).sum()), int((labels[i] == 0).sum())
        print(f"  image {i}: {proposals[i].shape[0]} proposals, {gt_boxes[i].shape[0]} gt -> {num_pos} pos, {num_neg} neg")
    return out


def sample_cases():
    g = torch.Generator().manual_seed(3)
    cases = {}
    # torchvision's defaults (512, 0.25): image 0 has fewer positives than the 128 quota, image 1
    # more (6 GT x 2 x 40 near copies); the C++ side uses RoiHeadsOptions{} unchanged.
    a, b = image_case(g, 3, 10, 900), image_case(g, 6, 40, 700)
    cases["defaults"] = select([a[0], b[0]], [a[1], b[1]], [a[2], b[2]], 512, 0.25, 21)
    # A small sample (64, 0.25 -> quota 16) over three images: many positives; an image without
    # ground truth (all proposals background); an image with too few negatives to fill the sample.
    a, c = image_case(g, 4, 30, 300), image_case(g, 2, 12, 10)
    empty = random_boxes(g, 100, 320, 256)
    cases["quota"] = select([a[0], empty, c[0]], [a[1], torch.zeros((0, 4)), c[1]],
                            [a[2], torch.zeros((0,), dtype=torch.int64), c[2]], 64, 0.25, 22)
    # A fraction other than the default, an image whose only candidates are its GT boxes (no
    # proposals) and the ties image.
    a, t = image_case(g, 5, 20, 200), ties_image()
    cases["ties"] = select([a[0], torch.zeros((0, 4)), t[0]], [a[1], t[1], t[1]], [a[2], t[2], t[2]], 96, 0.4, 23)
    return cases


# ---------------------------------------------------------------------------- whole-model losses

def build_model():
    torch.manual_seed(MODEL_SEED)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=3)
    box_head = TwoMLPHead(backbone.out_channels * 7 * 7, REPRESENTATION)
    mask_head = MaskRCNNHeads(backbone.out_channels, (MASK_CHANNELS,) * 4, 1)
    model = MaskRCNN(backbone, num_classes=None, min_size=MIN_SIZES, max_size=MAX_SIZE,
                     box_head=box_head, box_predictor=FastRCNNPredictor(REPRESENTATION, NUM_CLASSES),
                     mask_head=mask_head, mask_predictor=MaskRCNNPredictor(MASK_CHANNELS, MASK_CHANNELS, NUM_CLASSES))
    randomise_norms(model, torch.Generator().manual_seed(MODEL_SEED))
    return model


def make_targets(g, image, count):
    """`count` objects: a box and, inside it, a mask of an ellipse plus a rectangle (not convex, so
    a crop/resize error shows)."""
    _, h, w = image.shape
    boxes, masks = [], []
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    for _ in range(count):
        bw, bh = 24 + float(torch.rand(1, generator=g)) * (w * 0.6), 24 + float(torch.rand(1, generator=g)) * (h * 0.6)
        x1, y1 = float(torch.rand(1, generator=g)) * (w - bw), float(torch.rand(1, generator=g)) * (h - bh)
        x2, y2 = x1 + bw, y1 + bh
        cx, cy = x1 + bw * 0.4, y1 + bh * 0.5
        ellipse = ((xs - cx) / (bw * 0.4)) ** 2 + ((ys - cy) / (bh * 0.5)) ** 2 <= 1
        rect = (xs >= x1 + bw * 0.6) & (xs <= x2) & (ys >= y1) & (ys <= y1 + bh * 0.3)
        boxes.append([x1, y1, x2, y2])
        masks.append((ellipse | rect).to(torch.uint8))
    return {"boxes": torch.tensor(boxes), "labels": torch.randint(1, NUM_CLASSES, (count,), generator=g),
            "masks": torch.stack(masks)}


def model_case():
    model = build_model()
    # Crops of two COCO images (exact pixels, no resampling outside the model).
    images = [(read_image(os.path.join(IMAGE_DIR, "000000017627.jpg")).float() / 255.0)[:, 40:280, 0:310],
              (read_image(os.path.join(IMAGE_DIR, "000000025560.jpg")).float() / 255.0)[:, 0:300, 100:320]]
    images = [im.contiguous() for im in images]
    g = torch.Generator().manual_seed(MODEL_SEED + 1)
    targets = [make_targets(g, images[0], 3), make_targets(g, images[1], 4)]

    out = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    out = {"weights." + k: v for k, v in out.items()}
    for i, (im, t) in enumerate(zip(images, targets)):
        out[f"image_{i}"] = im
        out[f"boxes_{i}"], out[f"labels_{i}"], out[f"masks_{i}"] = t["boxes"], t["labels"], t["masks"]

    model.train()
    torch.manual_seed(LOSS_SEED)
    losses = model(images, targets)
    out["after"] = torch.rand(1)
    for k, v in losses.items():
        out["loss." + k] = v
        print(f"  {k} = {v.item():.8f}")
    sum(losses.values()).backward()
    params = dict(model.named_parameters())
    for name in GRAD_PARAMS:
        out["grad." + name] = params[name].grad
    out["seed"] = torch.tensor(LOSS_SEED)
    # The architecture, so the C++ test builds the same model without repeating the numbers.
    out.update(num_classes=torch.tensor(NUM_CLASSES), min_sizes=torch.tensor(MIN_SIZES), max_size=torch.tensor(MAX_SIZE),
               representation_size=torch.tensor(REPRESENTATION), mask_channels=torch.tensor(MASK_CHANNELS),
               depth=torch.tensor(18))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    # One thread, as the C++ test: a convolution's result depends on how its sums are split over
    # threads (~1e-6 here), enough to swap two proposals of near-equal objectness and so change
    # the sample. With the same split both sides compute the same numbers.
    torch.set_num_threads(1)
    for name, case in sample_cases().items():
        save(f"samples_{name}.pt", case)
    save("model.pt", model_case())


if __name__ == "__main__":
    main()
