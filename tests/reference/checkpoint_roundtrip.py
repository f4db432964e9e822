"""Checks files written by instseg's C++ checkpoint writer with Python's torch.load.

  checkpoint_roundtrip.py state_dict WRITTEN ORIGINAL [v1]
      WRITTEN must hold the same keys, in the same order, with equal tensors (dtype, shape, values)
      as ORIGINAL; with v1, it must also load into torchvision's maskrcnn_resnet50_fpn, strict.
  checkpoint_roundtrip.py archive WRITTEN
      WRITTEN must be the training-state archive the C++ test writes.
Exits non-zero with a message on the first difference.
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")

import sys

import torch


def fail(message):
    sys.exit("roundtrip: " + message)


def check_state_dict(written_path, original_path, model=None):
    written = torch.load(written_path)
    original = torch.load(original_path)
    if list(written) != list(original):
        fail("key order differs")
    for key, tensor in original.items():
        got = written[key]
        if got.dtype != tensor.dtype or got.shape != tensor.shape or not torch.equal(got, tensor):
            fail(f"tensor {key} differs")
    if model == "v1":
        from torchvision.models import detection
        net = detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        net.load_state_dict(written, strict=True)
        if not torch.equal(net.state_dict()["roi_heads.box_head.fc6.weight"], original["roi_heads.box_head.fc6.weight"]):
            fail("loaded model differs")
    print(f"OK {len(written)} tensors")


def check_archive(path):
    state = torch.load(path)
    expected = {"iteration": 1234, "lr": 0.02, "name": "mask_rcnn", "resume": True, "note": None}
    for key, value in expected.items():
        if state[key] != value:
            fail(f"{key} is {state[key]!r}, expected {value!r}")
    momentum = state["optimizer"]["momentum"]
    if not (torch.equal(momentum[0], torch.arange(6.0).reshape(2, 3)) and torch.equal(momentum[1], torch.ones(4))):
        fail("optimizer momentum buffers differ")
    print("OK archive")


if __name__ == "__main__":
    if sys.argv[1] == "state_dict":
        check_state_dict(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif sys.argv[1] == "archive":
        check_archive(sys.argv[2])
    else:
        fail("unknown mode " + sys.argv[1])
