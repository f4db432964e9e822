#!/usr/bin/python3
"""Writes the seed corpora under fuzz/corpus/ from the project's own files (committed; rerun only to
change them). Needs torch and PIL under /usr/bin/python3, as the test suite's references do.
Usage: fuzz/make_seeds.py"""
import io
import json
import os
import shutil
import struct
import zipfile
import zlib

import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)


def compact(value):
    return json.dumps(value, separators=(",", ":"))


def coco_seeds():
    with open(os.path.join(ROOT, "datasets/tiny_coco/annotations/instances_val2017.json")) as f:
        val = json.load(f)
    # Slices of tiny_coco: an image with polygons, one with a crowd RLE; only the categories used.
    crowd = next(a for a in val["annotations"] if a["iscrowd"])
    for name, image_id in (("tiny_coco_polygons.json", val["images"][0]["id"]),
                           ("tiny_coco_crowd.json", crowd["image_id"])):
        images = [i for i in val["images"] if i["id"] == image_id]
        anns = [a for a in val["annotations"] if a["image_id"] == image_id][:3]
        if crowd["image_id"] == image_id and crowd not in anns:
            anns[-1] = crowd
        cats = [c for c in val["categories"] if c["id"] in {a["category_id"] for a in anns}]
        write("coco_dataset", name, compact({"images": images, "annotations": anns, "categories": cats}))
    shutil.copy(os.path.join(ROOT, "tests/fixtures/coco_eval/gt/public_synth_gt.json"),
                os.path.join(OUT, "coco_dataset", "public_synth_gt.json"))
    write("coco_dataset", "minimal.json", '{"images":[{"id":1,"width":4,"height":3}],"categories":[{"id":1,'
          '"name":"a"}],"annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,2,2],"area":4,'
          '"iscrowd":0,"segmentation":[[0,0,2,0,2,2,0,2]]}]}')

    # Results against public_synth_gt.json (the harness's ground truth): masks and boxes, boxes only.
    with open(os.path.join(ROOT, "tests/fixtures/coco_eval/public_synth.json")) as f:
        results = json.load(f)
    write("coco_results", "public_synth_head.json", compact(results[:6]))
    write("coco_results", "boxes_only.json", compact([{k: r[k] for k in ("image_id", "category_id", "bbox", "score")}
                                                      for r in results[:4]]))
    write("coco_results", "empty.json", "[]")

    # The JSON parser: the COCO seeds plus escapes, unicode and numbers at their limits.
    write("json", "values.json", '{"a":[1,-0,-1.5e-3,18446744073709551615,-9223372036854775808,1e400],'
          '"s":"\\u00e9\\ud83d\\ude00\\n\\"\\\\","t":true,"f":false,"n":null,"o":{"":[[]]}}')
    write("json", "utf8.json", '["caf\u00e9", "\u6f22\u5b57"]')
    write("json", "counts.json", '{"size":[100,100],"counts":"al0n0V2000000\\\\Wn5"}')
    write("json", "public_synth_head.json", compact(results[:2]))


def checkpoint_seeds():
    state = {"conv.weight": torch.arange(8, dtype=torch.float32).reshape(2, 1, 2, 2),
             "conv.bias": torch.tensor([0.5, -1.0]),
             "bn.num_batches_tracked": torch.tensor(3), "empty": torch.zeros(0)}
    state["view"] = state["conv.weight"].view(-1)[2:6]  # shares the storage, with an offset
    archive = {"iteration": 7, "lr": 0.01, "flags": [True, None], "rng": (1, "mt"),
               "buffers": {0: torch.zeros(2, dtype=torch.float64)}}
    for name, value in (("state_dict", state), ("wrapped", {"model": state, "epoch": 1}), ("archive", archive)):
        for zip_format in (True, False):
            buffer = io.BytesIO()
            torch.save(value, buffer, _use_new_zipfile_serialization=zip_format)
            data = buffer.getvalue()
            write("checkpoint", name + (".zip.pth" if zip_format else ".legacy.pth"), data)
            if zip_format:  # the pickle inside, for the unpickler's own harness
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                    write("pickle", name + ".data.pkl", z.read(pkl))
            else:
                write("pickle", name + ".legacy.pkl", data)


def image_seeds():
    # 8x6 crops of a tiny_coco image in the formats and depths the reader handles.
    src = os.path.join(ROOT, "datasets/tiny_coco/val2017")
    rgb = Image.open(os.path.join(src, sorted(os.listdir(src))[0])).convert("RGB").crop((100, 100, 108, 106))
    for name, image, fmt, options in (
            ("rgb.png", rgb, "PNG", {}), ("gray.png", rgb.convert("L"), "PNG", {}),
            ("rgba.png", rgb.convert("RGBA"), "PNG", {}), ("gray16.png", rgb.convert("L").convert("I").point(lambda v: v * 257).convert("I;16"), "PNG", {}),
            ("palette.png", rgb.convert("P"), "PNG", {}), ("rgb.jpg", rgb, "JPEG", {"quality": 80}),
            ("progressive.jpg", rgb, "JPEG", {"progressive": True}), ("gray.jpg", rgb.convert("L"), "JPEG", {}),
            ("rgb.bmp", rgb, "BMP", {}), ("rgb.ppm", rgb, "PPM", {})):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        write("image", name, buffer.getvalue())
    # Small files whose headers declare huge images (20000 x 15000 RGB: 900 MB decoded, 3.6 GB as
    # floats): the pixel limit must refuse them before anything that size is allocated.
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 15000, 8, 2, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    write("image", "huge_header.png", png)
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG")
    jpeg = bytearray(buffer.getvalue())
    sof = jpeg.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 15000, 20000)
    write("image", "huge_header.jpg", bytes(jpeg))


def serve_request_seeds():
    # Query, Content-Type and Authorization lines, then the body: a PNG header over the harness's
    # limit with every option set, and a TIFF declaring 2^32 - 1 on each side (int64 overflow).
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1000, 1001, 8, 2, 0, 0, 0))
    write("serve_request", "png_over_limit",
          b"score_thresh=0.5&mask_format=polygon&max_detections=3\nimage/png\nBearer s3cret\n" + png)
    tiff = (b"II*\0" + struct.pack("<IH", 8, 2) + struct.pack("<HHII", 256, 4, 1, 0xFFFFFFFF) +
            struct.pack("<HHII", 257, 4, 1, 0xFFFFFFFF) + struct.pack("<I", 0))
    write("serve_request", "tiff_widest",
          b"mask_format=rle\nmultipart/form-data; boundary=x\nBearer wrong\n" + tiff)


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "json"))
    coco_seeds()
    checkpoint_seeds()
    image_seeds()
    serve_request_seeds()
