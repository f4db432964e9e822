#!/usr/bin/env bash
# The main job: installs what is missing, builds, and segments the tiny_coco validation images.
# Usage: scripts/run.sh --weights maskrcnn_resnet50_fpn_coco.pth [more predict options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target instseg
if [[ $# -eq 0 ]]; then
  echo "usage: scripts/run.sh --weights MODEL.pth   (a torchvision Mask R-CNN checkpoint; see README)" >&2
  exit 2
fi
exec build/instseg predict --input ../shared/data/tiny_coco/val2017 \
  --coco-gt ../shared/data/tiny_coco/annotations/instances_val2017.json --out out/predict "$@"
