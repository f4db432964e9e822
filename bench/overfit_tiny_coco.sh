#!/bin/bash
# Learning check on real images: train ResNet-18-FPN (narrow heads, from scratch) on the first 10
# tiny_coco train images (by id) and validate on the same 10; the run's log.jsonl and metrics.json
# hold box/mask AP (AP50 is stats[1]). Not a CI test: ~20-30 minutes on 2 cores.
#
# usage: bench/overfit_tiny_coco.sh [OUT_DIR] [--set key=value ...]   (run from the repository root)
set -euo pipefail
out=${1:-out/overfit}
shift || true
mkdir -p "$out"
/usr/bin/python3 - "datasets/tiny_coco/annotations/instances_train2017.json" "$out/train10.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
keep = sorted(image["id"] for image in data["images"])[:10]
data["images"] = [image for image in data["images"] if image["id"] in keep]
data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
json.dump(data, open(sys.argv[2], "w"))
print(f"{len(data['images'])} images, {len(data['annotations'])} annotations -> {sys.argv[2]}")
PY
build/instseg train --config configs/overfit_tiny_coco.json \
    --set data.train_annotations="$out/train10.json" --set data.val_annotations="$out/train10.json" \
    "$@" --out "$out/run"
/usr/bin/python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print('box AP50 %.3f, mask AP50 %.3f' % (m['bbox']['stats'][1], m['segm']['stats'][1]))" "$out/run/metrics.json"
