#include "instseg/engine/coco_results.h"

#include <torch/torch.h>

#include "instseg/coco/rle.h"

namespace instseg {

namespace {

// The boxes, scores and labels of `detections` as results without masks.
std::vector<coco::Detection> results_without_masks(int64_t image_id, const Detections& detections) {
  const auto boxes = detections.boxes.to(torch::kCPU, torch::kDouble).contiguous();
  const auto scores = detections.scores.to(torch::kCPU, torch::kDouble).contiguous();
  const auto labels = detections.labels.to(torch::kCPU, torch::kLong).contiguous();
  const auto* b = boxes.data_ptr<double>();
  std::vector<coco::Detection> out(static_cast<size_t>(scores.size(0)));
  for (int64_t i = 0; i < scores.size(0); ++i) {
    auto& d = out[static_cast<size_t>(i)];
    d.image_id = image_id;
    d.category_id = labels[i].item<int64_t>();
    d.bbox = {b[4 * i], b[4 * i + 1], b[4 * i + 2] - b[4 * i], b[4 * i + 3] - b[4 * i + 1]};
    d.score = scores[i].item<double>();
  }
  return out;
}

// What coco::encode gives for an h x w mask that is `region` (row-major, non-zero = foreground)
// on the pixels [y, y + rows) x [x, x + cols) and 0 elsewhere, without making or scanning the
// whole mask: the runs outside the region are added as lengths.
coco::Rle encode_region(const uint8_t* region, int64_t x, int64_t y, int64_t rows, int64_t cols, uint32_t h,
                        uint32_t w) {
  coco::Rle rle{h, w, {}};
  bool previous = false;
  uint64_t run = 0;
  const auto add = [&](bool value, uint64_t count) {
    if (count == 0) return;
    if (value != previous) {
      rle.counts.push_back(static_cast<uint32_t>(run));
      run = 0;
      previous = value;
    }
    run += count;
  };
  add(false, static_cast<uint64_t>(x) * h);  // columns left of the region
  for (int64_t c = 0; c < cols; ++c) {
    add(false, static_cast<uint64_t>(y));
    for (int64_t r = 0; r < rows; ++r) add(region[r * cols + c] != 0, 1);
    add(false, h - static_cast<uint64_t>(y + rows));
  }
  add(false, static_cast<uint64_t>(w - (x + cols)) * h);  // columns right of it
  rle.counts.push_back(static_cast<uint32_t>(run));      // h * w <= 2^30 (image_io.h): fits
  return rle;
}

}  // namespace

std::vector<coco::Detection> to_coco_detections(int64_t image_id, const Detections& detections,
                                                double mask_thresh) {
  auto out = results_without_masks(image_id, detections);
  if (!(detections.masks.defined() && detections.masks.numel() > 0)) return out;
  // All masks binarised at once: [K, H, W] uint8, row-major per mask as the RLE encoder expects.
  const auto binary = (detections.masks.select(1, 0) > mask_thresh).to(torch::kCPU, torch::kUInt8).contiguous();
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].mask = coco::encode(binary[static_cast<int64_t>(i)].data_ptr<uint8_t>(),
                               static_cast<uint32_t>(binary.size(1)), static_cast<uint32_t>(binary.size(2)));
  }
  return out;
}

std::vector<coco::Detection> to_coco_detections(int64_t image_id, const Detections& detections,
                                                const MaskPaster& masks, double mask_thresh) {
  TORCH_CHECK(mask_thresh >= 0, "to_coco_detections: mask_thresh must be >= 0, got ", mask_thresh);
  auto out = results_without_masks(image_id, detections);
  TORCH_CHECK(masks.size() == static_cast<int64_t>(out.size()), "to_coco_detections: ", masks.size(),
              " masks for ", out.size(), " detections");
  for (size_t i = 0; i < out.size(); ++i) {
    const MaskRegion pasted = masks.paste(static_cast<int64_t>(i));
    const auto binary = (pasted.probs > mask_thresh).to(torch::kCPU, torch::kUInt8).contiguous();
    out[i].mask = encode_region(binary.data_ptr<uint8_t>(), pasted.x, pasted.y, binary.size(0), binary.size(1),
                                static_cast<uint32_t>(masks.height()), static_cast<uint32_t>(masks.width()));
  }
  return out;
}

Detections with_category_ids(Detections detections, const data::CategoryMap& categories) {
  const auto labels = detections.labels.to(torch::kCPU, torch::kLong).contiguous();
  auto ids = torch::empty_like(labels);
  for (int64_t i = 0; i < labels.size(0); ++i) ids[i] = categories.category_id_of(labels[i].item<int64_t>());
  detections.labels = ids;
  return detections;
}

}  // namespace instseg
