"""Reference checkpoints for tests/checkpoint: torchvision state dicts written by Python's torch.save.

Usage: /usr/bin/python3 checkpoint.py OUTDIR

For every state dict NAME.pth it writes NAME.sums.pt, a plain dict {key: int64 tensor} with
[order-free byte sum, position-weighted byte sum, ndim, *shape], so the C++ reader can be checked
exactly without a second copy of the weights. Integer sums wrap identically in any order.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import argparse
import collections
import os
import sys

import torch
import torchvision
from torchvision.models import detection


def checksum(t):
    t = t.detach().contiguous()
    raw = t.view(torch.uint8) if t.dtype == torch.bool else t
    flat = raw.reshape(-1).view(torch.uint8)
    if flat.numel() % 4 == 0:
        flat = flat.view(torch.int32)
    words = flat.to(torch.int64)
    weights = torch.arange(1, words.numel() + 1, dtype=torch.int64)
    return torch.tensor([int(words.sum()), int((words * weights).sum()), t.dim(), *t.shape],
                        dtype=torch.int64)


def save(out, name, state_dict, legacy=False, sums=True):
    path = os.path.join(out, name)
    torch.save(state_dict, path, _use_new_zipfile_serialization=not legacy)
    if sums:
        stem = name[: -len(".pth")]
        torch.save({k: checksum(v) for k, v in state_dict.items()}, os.path.join(out, stem + ".sums.pt"))
        with open(os.path.join(out, stem + ".keys.txt"), "w") as f:
            f.write("".join(k + "\n" for k in state_dict))


def old_layout(state_dict):
    """Renames to the pre-0.13 torchvision names that the published COCO checkpoint uses."""
    renamed = collections.OrderedDict()
    for key, value in state_dict.items():
        parts = key.split(".")
        if key.startswith(("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks.")):
            parts = parts[:4] + parts[5:]  # backbone.fpn.inner_blocks.N.0.weight -> ...N.weight
        elif key.startswith("rpn.head.conv.0.0."):
            parts = ["rpn", "head", "conv", parts[-1]]
        elif key.startswith("roi_heads.mask_head."):
            parts = ["roi_heads", "mask_head", f"mask_fcn{int(parts[2]) + 1}", parts[-1]]
        renamed[".".join(parts)] = value
    # Old modules carried no version, so torchvision 0.14 applies its upgrade rules on load.
    renamed._metadata = collections.OrderedDict(
        (k, v) for k, v in state_dict._metadata.items()
        if not k.startswith(("backbone.fpn.inner_blocks", "backbone.fpn.layer_blocks",
                             "rpn.head.conv", "roi_heads.mask_head")))
    for prefix in ("backbone.fpn", "rpn.head", "roi_heads.mask_head"):
        renamed._metadata[prefix] = {"version": 1}
    return renamed


def mixed_tensors():
    torch.manual_seed(3)
    base = torch.randn(4, 6)
    halves = torch.randn(5, 3).half()
    return collections.OrderedDict([
        ("base", base),
        ("base_t", base.t()),                        # transposed view of the same storage
        ("base_slice", base[1:, 2:5]),               # offset and strides into the same storage
        ("half", halves),
        ("half_col", halves[:, 1]),
        ("double", torch.randn(3, 2, dtype=torch.float64)),
        ("int64", torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4) * 1000003),
        ("int32", torch.tensor([-2**31, 0, 2**31 - 1], dtype=torch.int32)),
        ("uint8", torch.arange(0, 256, 17, dtype=torch.uint8)),
        ("int8", torch.tensor([-128, -1, 0, 127], dtype=torch.int8)),
        ("bool", torch.tensor([[True, False, True], [False, False, True]])),
        ("bfloat16", torch.randn(7).bfloat16()),
        ("scalar", torch.tensor(2.5)),
        ("empty", torch.zeros(0, 3)),
    ])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    torch.manual_seed(0)
    v1 = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    save(out, "maskrcnn_v1.pth", v1)
    save(out, "maskrcnn_v1_legacy.pth", v1, legacy=True, sums=False)
    save(out, "maskrcnn_v1_oldkeys.pth", old_layout(v1), legacy=True, sums=False)

    torch.manual_seed(1)
    v2 = detection.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict()
    save(out, "maskrcnn_v2.pth", v2)
    save(out, "maskrcnn_v2_legacy.pth", v2, legacy=True, sums=False)

    torch.manual_seed(2)
    save(out, "resnet50.pth", torchvision.models.resnet50(weights=None).state_dict())
    torch.manual_seed(2)
    faster = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    save(out, "fasterrcnn.pth", faster.state_dict(), sums=False)

    mixed = mixed_tensors()
    save(out, "mixed.pth", mixed)
    save(out, "mixed_legacy.pth", mixed, legacy=True, sums=False)
    # The same values as independent contiguous tensors, for LibTorch's own reader.
    torch.save({k: v.clone() for k, v in mixed.items()}, os.path.join(out, "mixed_plain.pt"))
    # Training scripts wrap the state dict (torchvision's train.py also pickles its argparse args).
    save(out, "wrapped_model.pth", {"model": mixed, "epoch": 7, "args": argparse.Namespace(lr=0.02)},
         sums=False)
    save(out, "wrapped_state_dict.pth", {"state_dict": mixed, "iteration": 90000}, sums=False)
    save(out, "garbage_keys.pth", collections.OrderedDict(
        [("encoder.weight", torch.ones(2, 2)), ("decoder.bias", torch.zeros(2))]), sums=False)
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("these are not the weights you are looking for\n")


if __name__ == "__main__":
    sys.exit(main())
