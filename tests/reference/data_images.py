"""Image files written by PIL (an encoder independent of OpenCV) and the tensors torchvision's
detection reference would feed the model for them: to_tensor(Image.open(path).convert("RGB")).

Usage: /usr/bin/python3 data_images.py OUTDIR
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(3)
h, w = 7, 5

gray8 = rng.integers(0, 256, (h, w), dtype=np.uint8)
Image.fromarray(gray8, "L").save(os.path.join(out, "gray8.png"))
gray16 = rng.integers(0, 65536, (h, w), dtype=np.uint16)
Image.fromarray(gray16, "I;16").save(os.path.join(out, "gray16.png"))
rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
Image.fromarray(rgba, "RGBA").save(os.path.join(out, "rgba.png"))
palette = Image.fromarray(rng.integers(0, 4, (h, w), dtype=np.uint8), "P")
palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
palette.save(os.path.join(out, "palette.png"))

# reference-inputs: datasets/tiny_coco/train2017/000000005802.jpg
jpg = os.path.join(here, "../../datasets/tiny_coco/train2017/000000005802.jpg")
expected = {
    "gray8": to_tensor(Image.open(os.path.join(out, "gray8.png")).convert("RGB")),
    # PIL's RGB conversion of 16-bit data clips; the intended reading is value / 65535.
    "gray16": (torch.from_numpy(gray16.astype(np.int32)).float() / 65535).expand(3, h, w).contiguous(),
    "rgba": to_tensor(Image.open(os.path.join(out, "rgba.png")).convert("RGB")),
    "palette": to_tensor(Image.open(os.path.join(out, "palette.png")).convert("RGB")),
    "coco_jpg": to_tensor(Image.open(jpg).convert("RGB")),
}
torch.save(expected, os.path.join(out, "expected.pt"))
