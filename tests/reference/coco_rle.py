"""COCO results as pycocotools writes them, rebuilt from the format's spec, for
tests/engine/results_json_test.cpp (to_coco_detections) and tests/reference/checkpoint_roundtrip.py.

pycocotools cannot be installed here, so the mask encoder is written from the COCO mask format
(cocoapi maskApi.c's documented behaviour) and first checked against pycocotools' own outputs kept
in tests/fixtures/coco_eval/rle_cases.json:
  - runs: the mask read column by column (Fortran order), alternating run lengths starting with
    a run of zeros (0 when the first pixel is set);
  - string: each run as 5-bit groups, least significant first, +48 per character, 0x20 set on every
    group but the last; a group ends when the remaining value fits its sign bit (0x10); from the
    fourth run on (i > 2) the run minus the run two before is written (signed).

usage: /usr/bin/python3 tests/reference/coco_rle.py OUTDIR
  Verifies the encoder on every pycocotools case of rle_cases.json (exits non-zero on the first
  difference), then writes OUTDIR/detections.pt and OUTDIR/expected.json: torchvision's
  GeneralizedRCNNTransform.postprocess outputs (boxes in the original image, pasted masks) for
  hand-made per-box masks, and the COCO results of them (xywh boxes, mask > 0.5 encoded here).
"""
import reference_env  # noqa: E402  (the versions this script was written for)
reference_env.require(torch="1.13", torchvision="0.14")
# reference-inputs: tests/fixtures/coco_eval/rle_cases.json

import json
import os
import sys


def runs_of(mask_rows):
    """Run lengths of a mask given as rows (lists or strings of 0/1), column-major, zeros first."""
    h = len(mask_rows)
    w = len(mask_rows[0]) if h else 0
    runs, current, length = [], 0, 0
    for x in range(w):
        for y in range(h):
            value = 1 if int(mask_rows[y][x]) else 0
            if value != current:
                runs.append(length)
                current, length = value, 0
            length += 1
    runs.append(length)
    return runs


def compress(runs):
    """Run lengths -> the compressed counts string."""
    out = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        while True:
            chunk = value & 0x1F
            value >>= 5  # arithmetic shift: negative deltas stay negative
            more = not ((value == 0 and not (chunk & 0x10)) or (value == -1 and (chunk & 0x10)))
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
            if not more:
                break
    return "".join(out)


def decompress(counts):
    """The compressed counts string -> run lengths."""
    runs, pos = [], 0
    while pos < len(counts):
        value, shift = 0, 0
        while True:
            chunk = ord(counts[pos]) - 48
            pos += 1
            value |= (chunk & 0x1F) << shift
            shift += 5
            if not (chunk & 0x20):
                if chunk & 0x10:
                    value |= -1 << shift
                break
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def encode_rows(mask_rows):
    return compress(runs_of(mask_rows))


def rows_of(runs, h, w):
    """Run lengths -> rows of 0/1 strings."""
    flat, value = [], 0
    for run in runs:
        flat.extend([value] * run)
        value ^= 1
    assert len(flat) == h * w, (len(flat), h, w)
    return ["".join(str(flat[x * h + y]) for x in range(w)) for y in range(h)]


def verify_against_pycocotools(path):
    """Every pycocotools encoding in rle_cases.json, reproduced; returns how many were checked."""
    cases = json.load(open(path))
    checked = 0

    def expect(got, want, what):
        nonlocal checked
        if got != want:
            sys.exit(f"coco_rle: {what}: got {got!r}, pycocotools gave {want!r}")
        checked += 1

    for case in cases["encode"]:
        expect(runs_of(case["rows"]), case["counts_uncompressed"], "runs of encode/" + case["name"])
        expect(encode_rows(case["rows"]), case["counts"], "encode/" + case["name"])
        expect(rows_of(decompress(case["counts"]), case["h"], case["w"]), case["rows"], "decode/" + case["name"])
    for case in cases["from_uncompressed"]:
        # frPyObjects keeps the runs as given (a leading 0 included).
        expect(compress(case["counts_uncompressed"]), case["counts"], "from_uncompressed/" + case["name"])
    for case in cases["from_polygons"]:
        if case.get("merged_rows"):
            expect(encode_rows(case["merged_rows"]), case["merged"]["counts"], "from_polygons/" + case["name"])
    for case in cases["from_boxes"]:
        expect(encode_rows(case["rows"]), case["counts"], f"from_boxes/{case['box']}")
    for case in cases["merge"]:
        expect(encode_rows(case["union_rows"]), case["union"]["counts"], "merge union/" + case["name"])
        expect(encode_rows(case["intersection_rows"]), case["intersection"]["counts"], "merge inter/" + case["name"])
    for case in cases["ground_truth_rles"]:
        # Real object masks (long runs, negative deltas): the string decodes to runs that cover the
        # image, whose ones are pycocotools' area, and encode back to the same string.
        runs = decompress(case["counts"])
        h, w = case["size"]
        expect(sum(runs), h * w, f"ground_truth_rles/{case['id']} pixels")
        expect(sum(runs[1::2]), case["area"], f"ground_truth_rles/{case['id']} area")
        expect(compress(runs), case["counts"], f"ground_truth_rles/{case['id']}")
    return checked


def coco_results(image_id, boxes, scores, labels, masks, threshold=0.5):
    """COCO results of torchvision outputs: bbox xyxy -> xywh (doubles of the float32 values),
    mask > threshold encoded as above."""
    out = []
    for k in range(boxes.shape[0]):
        x1, y1, x2, y2 = (float(v) for v in boxes[k])
        binary = masks[k, 0] > threshold
        h, w = binary.shape
        column_major = binary.t().reshape(-1).tolist()  # runs go down the columns
        runs, current, length = [], False, 0
        for value in column_major:
            if value != current:
                runs.append(length)
                current, length = value, 0
            length += 1
        runs.append(length)
        out.append({"image_id": image_id, "category_id": int(labels[k]), "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(scores[k]), "segmentation": {"size": [h, w], "counts": compress(runs)},
                    "area": sum(runs[1::2])})
    return out


def make_detection_cases(out_dir):
    import torch
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    torch.manual_seed(21)
    # The model saw the image at 74 x 106; the original is 37 x 53: postprocess halves the boxes
    # and pastes each 28 x 28 mask into the original image (torchvision's paste_masks_in_image).
    resized, original = (74, 106), (37, 53)
    boxes = torch.tensor([
        [-10.0, -10.0, 116.0, 84.0],  # over the whole image: the mask covers it, touching every border
        [10.5, 8.25, 60.75, 50.5],   # ordinary
        [-20.0, 40.0, 30.0, 90.0],   # partly outside (left and bottom): cut by the borders
        [80.0, -5.0, 120.0, 20.0],   # partly outside (top and right)
        [30.0, 30.0, 70.0, 60.0],    # probabilities all below 0.5: an empty mask
        [50.0, 10.0, 51.5, 12.0],    # smaller than a pixel of the original
        [5.0, 5.0, 100.0, 70.0],     # the one with pixels exactly at 0.5 (set after pasting)
    ])
    k = boxes.shape[0]
    box_masks = torch.rand(k, 1, 28, 28)
    box_masks[0] = 0.75 + 0.25 * box_masks[0]  # all foreground
    box_masks[4] = 0.49 * box_masks[4]
    scores = torch.rand(k).sort(descending=True).values
    labels = torch.tensor([1, 3, 90, 7, 2, 44, 5])
    transform = GeneralizedRCNNTransform(min_size=74, max_size=106, image_mean=[0.0] * 3, image_std=[1.0] * 3).eval()
    result = transform.postprocess([{"boxes": boxes.clone(), "scores": scores, "labels": labels, "masks": box_masks}],
                                   [resized], [original])[0]
    pasted = result["masks"].clone()
    # Edge values: exactly 0.5 is background (mask > 0.5), the next float up is foreground.
    edge = pasted[6, 0]
    edge[3, :] = 0.5
    edge[:, 7] = 0.5
    edge[20, 20] = torch.nextafter(torch.tensor(0.5), torch.tensor(1.0))
    edge[0, 0] = 0.5
    edge[-1, -1] = 1.0
    expected = coco_results(5, result["boxes"], result["scores"], result["labels"], pasted)
    # Without the edge values (the per-box paste path re-pastes the box masks itself).
    expected_pasted = coco_results(5, result["boxes"], result["scores"], result["labels"], result["masks"])
    areas = [e["area"] for e in expected]
    # The cases are what they claim: full mask on all borders, an empty one, 0.5 pixels present.
    assert areas[0] == original[0] * original[1], areas
    assert areas[4] == 0, areas
    assert all(a > 0 for i, a in enumerate(areas) if i != 4 and i != 5), areas
    assert int((edge == 0.5).sum()) > original[0] + original[1] - 2
    assert expected[6]["segmentation"] != expected_pasted[6]["segmentation"]
    torch.save({"boxes": result["boxes"].contiguous(), "scores": result["scores"].contiguous(),
                "labels": result["labels"].contiguous(), "masks": pasted.contiguous(),
                "box_masks": box_masks.contiguous()}, os.path.join(out_dir, "detections.pt"))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"height": original[0], "width": original[1], "results": expected,
                   "results_pasted": expected_pasted}, f)


if __name__ == "__main__":
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    here = os.path.dirname(os.path.abspath(__file__))
    fixture = os.path.join(here, "..", "fixtures", "coco_eval", "rle_cases.json")
    print(f"coco_rle: {verify_against_pycocotools(fixture)} pycocotools encodings reproduced")
    make_detection_cases(out_dir)
