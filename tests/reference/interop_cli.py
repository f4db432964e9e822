"""Inputs for tests/cli/{predict,train}_command_test.cpp: checkpoints and odd images.

Usage: /usr/bin/python3 tests/reference/interop_cli.py OUTDIR  (the C++ tests run it via reference_dir).

  v1.pth            seeded random-init torchvision maskrcnn_resnet50_fpn (bench/make_checkpoint.py), zip format
  v1_legacy.pth     the same state dict in the legacy (pre-1.6) format
  truncated.pth     the first half of v1.pth's bytes
  resnet18_cls.pth  a torchvision resnet18 classification state dict: another architecture
  gray.png          a COCO validation image as 8-bit grayscale (1 channel)
  rgba.png          the same image as RGBA (4 channels, alpha varying)
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import os
import sys

import torch
import torchvision
from PIL import Image

out_dir = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, os.path.join(repo, "bench"))
import make_checkpoint  # noqa: E402

os.makedirs(out_dir, exist_ok=True)
state = make_checkpoint.make("v1").state_dict()
torch.save(state, os.path.join(out_dir, "v1.pth"))
torch.save(state, os.path.join(out_dir, "v1_legacy.pth"), _use_new_zipfile_serialization=False)
with open(os.path.join(out_dir, "v1.pth"), "rb") as f:
    data = f.read()
with open(os.path.join(out_dir, "truncated.pth"), "wb") as f:
    f.write(data[: len(data) // 2])
torch.manual_seed(0)
torch.save(torchvision.models.resnet18(weights=None).state_dict(), os.path.join(out_dir, "resnet18_cls.pth"))

source = os.path.join(repo, "datasets", "tiny_coco", "val2017", "000000037777.jpg")
image = Image.open(source).convert("RGB")
image.convert("L").save(os.path.join(out_dir, "gray.png"))
rgba = image.convert("RGBA")
alpha = Image.linear_gradient("L").resize(image.size)
rgba.putalpha(alpha)
rgba.save(os.path.join(out_dir, "rgba.png"))
