"""Reference values for a Mask R-CNN whose FPN is fed by ResNet stages 1..3 only (torchvision's
`returned_layers` of _resnet_fpn_extractor), on a ResNet-18 body.

Usage: /usr/bin/python3 returned_layers.py OUTDIR

The model is torchvision's
  MaskRCNN(_resnet_fpn_extractor(resnet18(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[1, 2, 3]),
           num_classes=91, rpn_anchor_generator=AnchorGenerator(4 levels), min_size=320, max_size=512)
IntermediateLayerGetter drops the ResNet stages after the last returned one, so the state dict has
no backbone.body.layer4 keys, the FPN has 3 inner and layer blocks ("0", "1", "2" and "pool"),
and the RoI poolers' default featmap_names ["0".."3"] filter down to the three maps present.
Random init made meaningful as end_to_end.py does: norms randomised (norm_init.py) and the
predictors rescaled so several classes pass the 0.05 score threshold and masks are not flat.
Writes plain dicts of tensors (torch.save) that tests/modeling/returned_layers_test.cpp reads:
  weights.pt   the state dict (without num_batches_tracked), every value rounded to a bfloat16 and
               saved as one (the model computes in float32 on exactly those values)
  e2e.pt       2 images (uint8, image_0 / image_1; the model's input is image.float() / 255),
               the transformed batch ("batch", "image_sizes"), its FPN maps (feat_0, feat_1,
               feat_2, feat_pool) and the final detections of that batch: boxes, scores, labels,
               every detection's 28x28 mask probabilities (box_masks) and every pasted mask
               binarised at 0.5 (mask_bits, bit-packed as end_to_end.py's pack_bits)
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")
# reference-inputs: datasets/tiny_coco/val2017/000000006818.jpg datasets/tiny_coco/val2017/000000017627.jpg

import os
import sys

import torch
import torch.nn.functional as F
from torchvision.io import read_image
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.resnet import resnet18
from torchvision.ops.misc import FrozenBatchNorm2d

from bf16_weights import round_to_bfloat16
from norm_init import randomise_norms

IMAGES = ["000000006818.jpg", "000000017627.jpg"]  # portrait and landscape: the batch pads both
IMAGE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "datasets", "tiny_coco", "val2017")
MIN_SIZE, MAX_SIZE = 320, 512
RETURNED_LAYERS = [1, 2, 3]
SEED = 7


def save(out, name, tensors):
    # clone: torch.save writes a view's whole storage
    torch.save({k: v.clone() for k, v in tensors.items()}, os.path.join(out, name))


def build_model():
    backbone = _resnet_fpn_extractor(resnet18(norm_layer=FrozenBatchNorm2d), 3, returned_layers=RETURNED_LAYERS)
    # One anchor size per FPN map: the three returned stages' maps plus "pool".
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 4)
    return MaskRCNN(backbone, num_classes=91, rpn_anchor_generator=anchors, min_size=MIN_SIZE, max_size=MAX_SIZE)


def calibrate(model, images):
    """Rescales the box and mask predictors so their logits have a useful spread on real images:
    the class logits centred on the box features' common component (so the per-proposal
    differences pick the class), background ahead for most proposals, mask logits of unit-ish
    spread around 0."""
    seen = {}
    rh = model.roi_heads
    hooks = [
        rh.box_predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("box", i[0])),
        rh.mask_predictor.register_forward_hook(lambda m, i, o: seen.__setitem__("mask", o)),
    ]
    with torch.no_grad():
        model(images)
        features = seen["box"].flatten(1)
        centre = features.mean(0)
        for layer, spread in [(rh.box_predictor.cls_score, 3.0), (rh.box_predictor.bbox_pred, 0.3)]:
            scale = spread / F.linear(features - centre, layer.weight).std()
            layer.weight.mul_(scale)
            layer.bias.copy_(-layer.weight @ centre)
        rh.box_predictor.cls_score.bias[0] += 3.0
        model(images)  # the mask head now sees the calibrated detections
        conv = rh.mask_predictor.mask_fcn_logits
        logits = seen["mask"]
        scale = 3.0 / logits.std()
        conv.weight.mul_(scale)
        conv.bias.copy_((conv.bias - logits.mean((0, 2, 3))) * scale)
    for h in hooks:
        h.remove()


def pack_bits(masks):
    """[K, 1, H, W] probabilities -> [K, ceil(H W / 8)] uint8: pixel p > 0.5 is bit 7 - p % 8 of byte
    p // 8 (row-major)."""
    bits = (masks > 0.5).flatten(1).to(torch.uint8)
    bits = F.pad(bits, (0, (-bits.shape[1]) % 8)).view(bits.shape[0], -1, 8)
    return (bits << torch.arange(7, -1, -1, dtype=torch.uint8)).sum(2, dtype=torch.uint8)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    model = build_model().eval()

    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert not any(k.startswith("backbone.body.layer4") for k in state), "layer4 should be dropped"
    assert any(k.startswith("backbone.body.layer3") for k in state)
    assert len(model.backbone.fpn.inner_blocks) == 3 and len(model.backbone.fpn.layer_blocks) == 3
    assert model.rpn.head.cls_logits.out_channels == 3  # one size x three ratios per level

    randomise_norms(model, torch.Generator().manual_seed(SEED))
    images = [read_image(os.path.join(IMAGE_DIR, n)) for n in IMAGES]  # uint8 [3, H, W]
    scaled = [im.float() / 255 for im in images]
    calibrate(model, scaled)
    round_to_bfloat16(model)
    save(out, "weights.pt", {k: v.bfloat16() if v.is_floating_point() else v
                             for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")})

    ref = {f"image_{i}": im for i, im in enumerate(images)}
    with torch.no_grad():
        image_list, _ = model.transform(scaled)
        features = model.backbone(image_list.tensors)
        assert list(features) == ["0", "1", "2", "pool"], list(features)
        ref["batch"] = image_list.tensors
        ref["image_sizes"] = torch.tensor(image_list.image_sizes, dtype=torch.int64)
        for name, f in features.items():
            ref["feat_" + name] = f
        box_masks = []
        hook = model.roi_heads.register_forward_hook(
            lambda m, i, o: box_masks.extend(r["masks"].clone() for r in o[0]))  # pasted in place later
        results = model(scaled)
        hook.remove()
    for i, (image, r, m) in enumerate(zip(images, results, box_masks)):
        ref[f"boxes_{i}"], ref[f"scores_{i}"], ref[f"labels_{i}"] = r["boxes"], r["scores"], r["labels"]
        ref[f"box_masks_{i}"] = m
        ref[f"mask_bits_{i}"] = pack_bits(r["masks"])
        assert m.shape == (len(r["boxes"]), 1, 28, 28) and r["masks"].shape[-2:] == image.shape[-2:]
        # Several detections of several classes, masks far from flat: a comparison that means something.
        assert len(r["boxes"]) >= 20 and len(r["labels"].unique()) >= 3, (len(r["boxes"]), r["labels"].unique())
        assert m.std() > 0.1
    save(out, "e2e.pt", ref)


if __name__ == "__main__":
    main()
