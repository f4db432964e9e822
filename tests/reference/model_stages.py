"""Reference values for the first half of Mask R-CNN (transform, backbone, FPN, anchors, RPN).

Usage: /usr/bin/python3 tests/reference/model_stages.py OUTDIR  (the C++ tests run it via
reference_dir). Builds seeded random-init torchvision 0.14 models, gives every batch norm random
statistics and affine terms (eval-mode batch norm is then a frozen batch norm that is not the
identity), and writes one torch.save({name: tensor}) file per case:
  v1_state.pt, v2_state.pt  backbone.* and rpn.* tensors of maskrcnn_resnet50_fpn(_v2)
  v1_small.pt   two tiny_coco images at min_size 320 through v1: every stage's output
  v2_small.pt   the same images through v2: FPN maps and proposals
  v1_full.pt    one image at the default min_size 800 through v1: batch and proposals
  resize_sizes.pt, resize_train.pt, resnet{18,34,101}.pt, rpn_losses.pt
Weights are rounded to bfloat16-representable values before any output is computed and saved as
bfloat16: half the bytes, and the float32 computations see exactly the saved values.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")
# reference-inputs: datasets/tiny_coco/val2017/000000006818.jpg datasets/tiny_coco/val2017/000000037777.jpg

import os
import sys

import torch
import torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from bf16_weights import round_to_bfloat16

out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
torch.set_num_threads(2)
VAL = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "tiny_coco", "val2017")


def save(name, tensors):
    torch.save({k: v.detach().contiguous() for k, v in tensors.items()}, os.path.join(out_dir, name + ".pt"))


def randomise(model, seed, calibrate):
    """Random batch-norm affine terms and statistics near those of real activations (taken from
    one train-mode pass of `calibrate()`), so features keep a sane magnitude through 50+ layers
    while eval-mode batch norm is far from the identity."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0  # running statistics := this batch's
    model.train()
    with torch.no_grad():
        calibrate()
    model.eval()
    for m in norms:
        c = m.num_features
        m.running_mean.add_(torch.randn(c, generator=g) * 0.1 * m.running_var.sqrt())
        m.running_var.mul_(torch.rand(c, generator=g) * 0.5 + 0.75)
        m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
        m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


@torch.no_grad()
def spread_rpn_head(model, images):
    """The default head init (std 0.01) leaves every objectness near 0.5, where NMS order is
    decided by rounding; scale it so logits spread over a few units and deltas move boxes."""
    head = model.rpn.head
    batch, _ = model.transform(images)
    features = list(model.backbone(batch.tensors).values())
    objectness, deltas = head(features)
    head.cls_logits.weight.mul_(2.0 / torch.cat([o.flatten() for o in objectness]).std())
    head.bbox_pred.weight.mul_(0.3 / torch.cat([d.flatten() for d in deltas]).std())


def as_bfloat16(tensors):
    return {k: v.bfloat16() if v.is_floating_point() else v for k, v in tensors.items()}


def state(model, prefixes):
    return as_bfloat16({k: v for k, v in model.state_dict().items()
                        if k.startswith(prefixes) and not k.endswith("num_batches_tracked")})


def load_image(name):
    return torchvision.io.read_image(os.path.join(VAL, name)).float() / 255  # [3, H, W] in [0, 1]


images = [load_image("000000006818.jpg"), load_image("000000037777.jpg")]  # 427x640, 352x230


@torch.no_grad()
def run_stages(model, imgs, min_size):
    model.transform.min_size = (min_size,)
    batch, _ = model.transform(imgs)
    out = {"batch": batch.tensors, "image_sizes": torch.tensor([list(s) for s in batch.image_sizes])}
    body = model.backbone.body(batch.tensors)
    for k, v in body.items():
        out["body." + k] = v
    features = model.backbone.fpn(body)
    for k, v in features.items():
        out["fpn." + k] = v
    feature_list = list(features.values())
    objectness, deltas = model.rpn.head(feature_list)
    for level, (o, d) in enumerate(zip(objectness, deltas)):
        out[f"objectness.{level}"] = o
        out[f"deltas.{level}"] = d
    anchors = model.rpn.anchor_generator(batch, feature_list)
    out["anchors"] = anchors[0]
    proposals, _ = model.rpn(batch, features)
    for i, p in enumerate(proposals):
        out[f"proposals.{i}"] = p
    return out, batch, features


torch.manual_seed(0)
v1 = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
v1.transform.min_size = (320,)
randomise(v1, 1, lambda: v1.backbone(v1.transform(images)[0].tensors))
spread_rpn_head(v1, images)
round_to_bfloat16(v1)
save("v1_state", state(v1, ("backbone.", "rpn.")))
small, batch, features = run_stages(v1, images, 320)
for i, image in enumerate(images):
    small[f"image.{i}"] = image
save("v1_small", small)

# Losses on the same batch: anchors matched to two ground-truth boxes per image, the sampler's
# choice saved so the C++ side can score exactly the same anchors.
with torch.no_grad():
    rpn = v1.rpn
    feature_list = list(features.values())
    objectness, deltas = rpn.head(feature_list)
    anchors = rpn.anchor_generator(batch, feature_list)
    from torchvision.models.detection.rpn import concat_box_prediction_layers
    flat_objectness, flat_deltas = concat_box_prediction_layers(objectness, deltas)
    targets = [{"boxes": torch.tensor([[30.0, 40.0, 200.0, 180.0], [250.0, 60.0, 420.0, 300.0]])},
               {"boxes": torch.tensor([[10.0, 20.0, 150.0, 300.0], [60.0, 100.0, 190.0, 200.0]])}]
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
    regression_targets = rpn.box_coder.encode(matched, anchors)
    torch.manual_seed(5)
    pos, neg = rpn.fg_bg_sampler(labels)
    torch.manual_seed(5)
    loss_objectness, loss_box = rpn.compute_loss(flat_objectness, flat_deltas, labels, regression_targets)
    save("rpn_losses", {
        "objectness": flat_objectness, "deltas": flat_deltas,
        "gt_boxes.0": targets[0]["boxes"], "gt_boxes.1": targets[1]["boxes"],
        "labels": torch.cat(labels), "regression_targets": torch.cat(regression_targets),
        "sampled_pos": torch.where(torch.cat(pos))[0], "sampled_neg": torch.where(torch.cat(neg))[0],
        "loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box})

full, _, _ = run_stages(v1, images[:1], 800)
save("v1_full", {k: v for k, v in full.items() if k in ("batch", "image_sizes", "proposals.0")})

torch.manual_seed(0)
v2 = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).eval()
v2.transform.min_size = (320,)
randomise(v2, 2, lambda: v2.backbone(v2.transform(images)[0].tensors))
spread_rpn_head(v2, images)
round_to_bfloat16(v2)
save("v2_state", state(v2, ("backbone.", "rpn.")))
small2, _, _ = run_stages(v2, images, 320)
save("v2_small", {k: v for k, v in small2.items() if k.startswith(("fpn.", "proposals.", "objectness."))})

# Resized sizes over odd shapes, including ones where max_size wins: the float32 scale and the
# floor in interpolate() decide them, so compare exactly.
g = torch.Generator().manual_seed(3)
rows = []
transform = GeneralizedRCNNTransform(800, 1333, [0.0] * 3, [1.0] * 3)
for _ in range(40):
    h, w = (int(v) for v in torch.randint(20, 1400, (2,), generator=g))
    min_size = int(torch.randint(200, 1000, (1,), generator=g))
    transform.min_size = (min_size,)
    transform.eval()
    resized, _ = transform.resize(torch.zeros(1, h, w), None)
    rows.append([h, w, min_size, 1333, resized.shape[-2], resized.shape[-1]])
rows = torch.tensor(rows)
# Two keys: a one-entry dict pickles with SETITEM, which LibTorch 1.13's unpickler rejects.
save("resize_sizes", {"inputs": rows[:, :4], "expected": rows[:, 4:]})

# Training-mode resize of targets: boxes scaled, masks resized with nearest interpolation.
train_transform = GeneralizedRCNNTransform(320, 1333, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).train()
masks = (torch.rand(2, 230, 352, generator=g) > 0.5).to(torch.uint8)  # [G, H, W] of images[1]
boxes = torch.tensor([[10.5, 20.25, 100.0, 300.75], [0.0, 0.0, 229.0, 351.0]])
batch_t, targets_t = train_transform([images[1]], [{"boxes": boxes.clone(), "masks": masks.clone()}])
save("resize_train", {"image": images[1], "boxes": boxes, "masks": masks, "batch": batch_t.tensors,
                      "resized_boxes": targets_t[0]["boxes"], "resized_masks": targets_t[0]["masks"]})

# Plain ResNets (basic blocks, and the deep bottleneck one) at a small input.
x = torch.randn(1, 3, 64, 96, generator=g)
for depth, ctor in ((18, torchvision.models.resnet18), (34, torchvision.models.resnet34),
                    (101, torchvision.models.resnet101)):
    torch.manual_seed(depth)
    net = ctor(weights=None).eval()
    randomise(net, depth, lambda: net(x))
    round_to_bfloat16(net)
    out = as_bfloat16({k: v for k, v in net.state_dict().items()
                       if not k.startswith("fc.") and not k.endswith("num_batches_tracked")})
    out = {"state." + k: v for k, v in out.items()}
    with torch.no_grad():
        y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        for i in range(1, 5):
            y = getattr(net, f"layer{i}")(y)
            out[f"layer{i}"] = y
    out["input"] = x
    save(f"resnet{depth}", out)
