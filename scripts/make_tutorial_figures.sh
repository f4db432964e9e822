#!/usr/bin/env bash
# Regenerates every picture of docs/tutorial/figures/ (never edit them by hand):
#   scripts/make_tutorial_figures.sh [--runs DIR]
# 1. trains the two models the figures need into DIR (default out/tutorial_runs), unless DIR
#    already holds them (DIR/demo/model_last.pth, DIR/tiny_coco_scratch/model_last.pth):
#    - DIR/demo: the demo's recipe (configs/demo.json) for a fixed 1500 iterations on one thread
#      (a fixed count, not the demo's time budget, so the figures do not depend on the machine's load);
#    - DIR/tiny_coco_scratch: configs/tiny_coco_scratch.json, from scratch on datasets/tiny_coco's
#      50 train2017 photos, validated on its 50 val2017 photos (about an hour on one core);
# 2. `instseg explain --format jpg` into figures/gt (targets, no weights), figures/demo (the demo
#    model on a picture in the demo's style, scripts/make_demo_images.py) and figures/photos (the
#    tiny_coco model, with the ground truth);
# 3. figures/results: both runs scored again with `instseg eval` (AP tables, PR curves, confusion
#    matrices), their training curves (scripts/plot_run_curves.py), `instseg predict` overlays;
# 4. figures/MANIFEST.txt: the sha256 of every file written (tests/docs/check_docs.py checks that
#    every picture the docs show is listed there with its hash).
# Needs build/instseg (scripts/build.sh --target instseg; INSTSEG=... to use another) and the
# reference Python with torch and torchvision (PYTHON, default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=out/tutorial_runs
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS="${2:?--runs needs a folder}"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_tutorial_figures.sh: unknown argument '$1' (usage: $0 [--runs DIR])" >&2; exit 2 ;;
  esac
done
INSTSEG="${INSTSEG:-build/instseg}"
PYTHON="${PYTHON:-/usr/bin/python3}"
[[ -x "$INSTSEG" ]] || { echo "make_tutorial_figures.sh: $INSTSEG missing: scripts/build.sh --target instseg" >&2; exit 1; }
"$PYTHON" -c "import torch, torchvision" 2>/dev/null ||
  { echo "make_tutorial_figures.sh: $PYTHON lacks torch/torchvision (set PYTHON=...)" >&2; exit 1; }

FIG=docs/tutorial/figures
DEMO_RUN="$RUNS/demo"
PHOTO_RUN="$RUNS/tiny_coco_scratch"
VAL_JSON=datasets/tiny_coco/annotations/instances_val2017.json
VAL_DIR=datasets/tiny_coco/val2017
GT_IMAGE=000000219578.jpg     # a dog, a cat and two couches: large objects, four instances
PHOTO_IMAGE=000000085329.jpg  # a person (the most frequent class of the training photos) and a tie
PHOTO_OVERLAYS=(000000085329.jpg 000000219578.jpg 000000308394.jpg 000000322864.jpg)
DEMO_ITERATIONS=1500

# 1. The runs (the exact commands, so that the tutorial can quote them).
mkdir -p "$RUNS"
if [[ ! -f "$DEMO_RUN/model_last.pth" ]]; then
  echo "== training the demo model into $DEMO_RUN ($DEMO_ITERATIONS iterations)"
  "$INSTSEG" train --config configs/demo.json --set optim.iterations=$DEMO_ITERATIONS --set run.threads=1 \
    --out "$DEMO_RUN" --overwrite
fi
if [[ ! -f "$PHOTO_RUN/model_last.pth" ]]; then
  echo "== training from scratch on tiny_coco into $PHOTO_RUN"
  "$INSTSEG" train --config configs/tiny_coco_scratch.json --set run.threads=1 --out "$PHOTO_RUN" --overwrite
fi

# 2.-3. Into a fresh folder first, so a failure leaves the committed figures as they were.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
NEW="$WORK/figures"
mkdir -p "$NEW/results"
"$PYTHON" scripts/make_demo_images.py "$WORK/demo_images"

echo "== explain: training targets without weights ($GT_IMAGE)"
"$INSTSEG" explain --input "$VAL_DIR/$GT_IMAGE" --gt "$VAL_JSON" --format jpg --out "$NEW/gt"
echo "== explain: the demo model on a picture in the demo's style"
"$INSTSEG" explain --input "$WORK/demo_images/demo_shapes.png" --weights "$DEMO_RUN" --format jpg --out "$NEW/demo"
echo "== explain: the tiny_coco model with the ground truth ($PHOTO_IMAGE)"
"$INSTSEG" explain --input "$VAL_DIR/$PHOTO_IMAGE" --weights "$PHOTO_RUN" --gt "$VAL_JSON" --format jpg \
  --out "$NEW/photos"

# PNG -> JPEG (quality 90) with torchvision, the reference Python's: no other image tool needed.
to_jpg() {
  "$PYTHON" - "$@" <<'EOF'
import sys
from torchvision.io import ImageReadMode, read_image, write_jpeg
for png, jpg in zip(sys.argv[1::2], sys.argv[2::2]):
    write_jpeg(read_image(png, ImageReadMode.RGB), jpg, quality=90)
EOF
}

# One run's scores, curves and plots under results/<prefix>_*.
results_of_run() {
  local run="$1" prefix="$2" title="$3"
  "$INSTSEG" eval --gt "$run/val_annotations.json" --results "$run/val_predictions.json" --per-class \
    --json "$NEW/results/${prefix}_eval.json" --plots "$WORK/plots_$prefix" | sed "s|$WORK/||" \
    > "$NEW/results/${prefix}_ap.txt"
  local args=()
  for name in pr_segm_iou50 pr_segm_iou75 pr_segm_iou50-95 pr_bbox_iou50-95 confusion_segm; do
    [[ -f "$WORK/plots_$prefix/$name.png" ]] && args+=("$WORK/plots_$prefix/$name.png" "$NEW/results/${prefix}_$name.jpg")
  done
  to_jpg "${args[@]}"
  cp "$WORK/plots_$prefix/confusion_segm.csv" "$NEW/results/${prefix}_confusion_segm.csv"
  "$PYTHON" scripts/plot_run_curves.py "$run" "$NEW/results/${prefix}_curves.svg" "$title"
  # The run's own settings and timing, as the tutorial quotes them.
  "$PYTHON" - "$run" > "$NEW/results/${prefix}_run.txt" <<'EOF'
import json, sys
run = sys.argv[1]
cfg = json.load(open(f"{run}/config.json"))
records = [json.loads(l) for l in open(f"{run}/log.jsonl")]
train = [r for r in records if r.get("type") == "train"]
val = [r for r in records if r.get("type") == "val"]
print(f"iterations: {cfg['optim']['iterations']} (batch {cfg['optim']['batch_size']}, {cfg['optim']['optimizer']}, "
      f"lr {cfg['optim']['lr']}, precision {cfg['optim']['precision']}), threads: {cfg['run']['threads']}")
if train:
    last = train[-1]
    print(f"training time to iteration {last['iteration']}: {last['elapsed_seconds']:.0f} s "
          f"({last['iteration'] / last['elapsed_seconds']:.2f} it/s, log.jsonl elapsed_seconds)")
    picks = sorted({0, len(train) // 4, len(train) // 2, 3 * len(train) // 4, len(train) - 1})
    print("training loss (one log record, not smoothed): " +
          ", ".join(f"{train[i]['loss']:.3f} at {train[i]['iteration']}" for i in picks))
for r in val:
    print(f"validation at iteration {r['iteration']}: box AP {r['bbox'][0]:.3f}, mask AP {r['segm'][0]:.3f}")
EOF
  # What the errors are: the detections scoring >= 0.25 (the confusion matrix's threshold) matched to
  # the ground truth greedily by box IoU >= 0.5, in score order; the rest told apart by their best IoU.
  "$PYTHON" - "$run" > "$NEW/results/${prefix}_errors.txt" <<'EOF'
import collections, json, sys
run = sys.argv[1]
gt = json.load(open(f"{run}/val_annotations.json"))
all_dets = json.load(open(f"{run}/val_predictions.json"))
dets = [d for d in all_dets if d["score"] >= 0.25]
names = {c["id"]: c["name"] for c in gt["categories"]}
objects = collections.defaultdict(list)
for a in gt["annotations"]:
    if not a.get("iscrowd", 0):
        objects[a["image_id"]].append(a)
def iou(a, b):
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)
matched, kinds, wrong_class = set(), collections.Counter(), collections.Counter()
for d in sorted(dets, key=lambda d: -d["score"]):
    ranked = sorted(((iou(d["bbox"], g["bbox"]), g["id"], g["category_id"]) for g in objects[d["image_id"]]),
                    reverse=True)
    free = [r for r in ranked if r[0] >= 0.5 and r[1] not in matched]
    if free:
        matched.add(free[0][1])
        kinds["matched an object (box IoU >= 0.5)"] += 1
        if free[0][2] != d["category_id"]:
            wrong_class[f"{names[free[0][2]]} called {names[d['category_id']]}"] += 1
    elif ranked and ranked[0][0] >= 0.5:
        kinds["second detection of an object already matched (box IoU >= 0.5)"] += 1
    elif ranked and ranked[0][0] >= 0.1:
        kinds["on part of an object (box IoU 0.1-0.5)"] += 1
    else:
        kinds["on background (box IoU < 0.1 with every object)"] += 1
total = sum(len(v) for v in objects.values())
print(f"detections scoring >= 0.25: {len(dets)} (of {len(all_dets)}); objects: {total} in {len(gt['images'])} images")
for k, n in kinds.most_common():
    print(f"  {k}: {n}")
print(f"  of the matched, with the wrong class: {sum(wrong_class.values())} {dict(wrong_class.most_common())}")
print(f"objects without a detection scoring >= 0.25 at box IoU >= 0.5: {total - len(matched)}")
EOF
}
results_of_run "$DEMO_RUN" demo "demo model: configs/demo.json, $DEMO_ITERATIONS iterations"
results_of_run "$PHOTO_RUN" photos "tiny_coco from scratch: configs/tiny_coco_scratch.json"
# What the photo model had to learn from: the splits' sizes and most frequent classes.
"$PYTHON" - datasets/tiny_coco/annotations/instances_{train,val}2017.json > "$NEW/results/photos_data.txt" <<'EOF'
import collections, json, sys
splits = []
for path in sys.argv[1:]:
    d = json.load(open(path))
    names = {c["id"]: c["name"] for c in d["categories"]}
    counts = collections.Counter(names[a["category_id"]] for a in d["annotations"] if not a.get("iscrowd", 0))
    print(f"{path}: {len(d['images'])} images, {sum(counts.values())} objects (crowd regions left out), "
          f"{len(counts)} of {len(names)} classes present; most frequent: "
          + ", ".join(f"{n} {k}" for n, k in counts.most_common(12)))
    splits.append(counts)
unseen = {n: k for n, k in splits[1].items() if n not in splits[0]}
print(f"validation objects of classes with no training example: {sum(unseen.values())} "
      f"({len(unseen)} classes: " + ", ".join(f"{n} {k}" for n, k in sorted(unseen.items(), key=lambda x: -x[1])) + ")")
EOF
{
  grep -m1 'Model name' <(lscpu) | sed 's/^Model name: */CPU: /'
  echo "cores: $(nproc); bfloat16 arithmetic (avx512_bf16, what optim.precision auto uses):" \
    "$(grep -q avx512_bf16 /proc/cpuinfo && echo yes || echo no)"
} > "$NEW/results/cpu.txt"

echo "== predict: overlays"
# predict's detections without their masks (the overlays show those), for the scores the text quotes.
keep_scores() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
dets = json.load(open(sys.argv[1]))
keep = ("file_name", "image_id", "category_id", "score", "bbox")
with open(sys.argv[2], "w") as f:
    f.write("[\n" + ",\n".join(json.dumps({k: d[k] for k in keep if k in d}) for d in dets) + "\n]\n")
EOF
}
# The demo's pictures upscaled x3 (nearest) so that labels are readable: the model resizes them back
# to its 128 px input, where each output pixel lands on the centre of a 3x3 block, i.e. the same pixels.
"$PYTHON" - "$WORK/demo_images" "$WORK/demo_x3" <<'EOF'
import os, sys
from torchvision.io import read_image, write_png
os.makedirs(sys.argv[2], exist_ok=True)
for name in sorted(os.listdir(sys.argv[1])):
    img = read_image(os.path.join(sys.argv[1], name))
    write_png(img.repeat_interleave(3, 1).repeat_interleave(3, 2), os.path.join(sys.argv[2], name))
EOF
"$INSTSEG" predict --weights "$DEMO_RUN" --input "$WORK/demo_x3" --out "$WORK/pred_demo" > "$WORK/pred_demo.log"
for f in "$WORK"/pred_demo/*.overlay.jpg; do
  cp "$f" "$NEW/results/demo_overlay_$(basename "$f" .overlay.jpg).jpg"
done
keep_scores "$WORK/pred_demo/predictions.json" "$NEW/results/demo_overlay_predictions.json"
# The photo model's scores are low: draw what scores 0.3 or more (predict's default is 0.5).
inputs=()
for f in "${PHOTO_OVERLAYS[@]}"; do inputs+=("$VAL_DIR/$f"); done
"$INSTSEG" predict --weights "$PHOTO_RUN" --input "${inputs[@]}" --out "$WORK/pred_photos" --show-thresh 0.3 \
  > "$WORK/pred_photos.log"
for f in "$WORK"/pred_photos/*.overlay.jpg; do
  cp "$f" "$NEW/results/photos_overlay_$(basename "$f" .overlay.jpg).jpg"
done
keep_scores "$WORK/pred_photos/predictions.json" "$NEW/results/photos_overlay_predictions.json"

# 4. Replace the figures and list them.
rm -rf "$FIG"
mkdir -p "$(dirname "$FIG")"
cp -r "$NEW" "$FIG"
(cd "$FIG" && find . -type f ! -name MANIFEST.txt | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum) > "$WORK/MANIFEST.txt"
mv "$WORK/MANIFEST.txt" "$FIG/MANIFEST.txt"
echo "== wrote $(wc -l < "$FIG/MANIFEST.txt") files into $FIG ($(du -sh "$FIG" | cut -f1)); listed in $FIG/MANIFEST.txt"
