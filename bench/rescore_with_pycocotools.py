"""Re-scores a run folder's validation files with pycocotools and compares with its metrics.json.

A run of `instseg demo` / `instseg train` writes val_annotations.json (the ground truth),
val_predictions.json (its detections, COCO results format) and metrics.json (instseg's own
evaluation). This script scores the first two with pycocotools' COCOeval for "bbox" and "segm"
and prints, per type, pycocotools' AP and the largest difference over the 12 summary numbers.
Exit status 1 when a difference exceeds --tolerance.

pycocotools is not a Debian package: build cocoapi's PythonAPI with Debian's cython3 (see
docs/benchmarks.md, "Demo learning") and pass its folder with --pycocotools.

usage: /usr/bin/python3 bench/rescore_with_pycocotools.py RUN_DIR [RUN_DIR ...]
           [--pycocotools /path/to/cocoapi/PythonAPI] [--tolerance 1e-9]
"""
import argparse
import contextlib
import io
import json
import os
import sys


def stub_matplotlib_if_missing():
    # pycocotools.coco imports matplotlib at the top for showAnns (drawing) only; scoring never
    # touches it, and Debian's python3 has no matplotlib unless python3-matplotlib is installed.
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        import types
        for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.collections",
                     "matplotlib.patches"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["matplotlib.collections"].PatchCollection = None
        sys.modules["matplotlib.patches"].Polygon = None


def restore_numpy_float_alias():
    # cocoapi's own cocoeval.py (the GitHub source; PyPI's 2.0.x fixed it) uses np.float, which
    # NumPy 1.24 removed; it meant the builtin float.
    import numpy as np
    if "float" not in np.__dict__:
        np.float = float


def rescore(run_dir, tolerance):
    stub_matplotlib_if_missing()
    restore_numpy_float_alias()
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with open(os.path.join(run_dir, "metrics.json")) as f:
        ours = json.load(f)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        truth = COCO(os.path.join(run_dir, "val_annotations.json"))
        results = truth.loadRes(os.path.join(run_dir, "val_predictions.json"))
    worst_overall = 0.0
    for iou_type in ("bbox", "segm"):
        evaluator = COCOeval(truth, results, iou_type)
        with contextlib.redirect_stdout(quiet):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        theirs = [float(v) for v in evaluator.stats]
        mine = ours[iou_type]["stats"]
        worst = max(abs(a - b) for a, b in zip(theirs, mine))
        worst_overall = max(worst_overall, worst)
        print(f"{run_dir} {iou_type}: pycocotools AP {theirs[0]:.4f}, metrics.json {mine[0]:.4f}, "
              f"largest difference over the 12 numbers {worst:.1e}")
    return worst_overall <= tolerance


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--pycocotools", default=None,
                        help="folder holding the pycocotools package (cocoapi's PythonAPI)")
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args()
    if args.pycocotools:
        sys.path.insert(0, args.pycocotools)
    ok = True
    for run in args.runs:
        ok = rescore(run, args.tolerance) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
