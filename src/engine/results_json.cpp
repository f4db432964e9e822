#include "instseg/engine/results_json.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "instseg/coco/dataset.h"
#include "instseg/coco/rle.h"

namespace instseg {

void ResultsJsonWriter::add(int64_t image_id, const std::string& file_name,
                            const Detections& detections, double mask_thresh) {
  const auto boxes = detections.boxes.to(torch::kCPU, torch::kDouble).contiguous();
  const auto scores = detections.scores.to(torch::kCPU, torch::kDouble).contiguous();
  const auto labels = detections.labels.to(torch::kCPU, torch::kLong).contiguous();
  const bool has_masks = detections.masks.defined() && detections.masks.numel() > 0;
  // Binarise all masks at once: [K, H, W] uint8, row-major per mask as the RLE encoder expects.
  const auto binary = has_masks ? (detections.masks.select(1, 0) > mask_thresh)
                                      .to(torch::kCPU, torch::kUInt8)
                                      .contiguous()
                                : torch::Tensor();
  const auto* b = boxes.data_ptr<double>();
  for (int64_t i = 0; i < scores.size(0); ++i) {
    nlohmann::json entry;
    entry["image_id"] = image_id;
    entry["category_id"] = labels[i].item<int64_t>();
    entry["bbox"] = {b[4 * i], b[4 * i + 1], b[4 * i + 2] - b[4 * i], b[4 * i + 3] - b[4 * i + 1]};
    entry["score"] = scores[i].item<double>();
    if (has_masks) {
      const auto h = static_cast<uint32_t>(binary.size(1));
      const auto w = static_cast<uint32_t>(binary.size(2));
      const auto rle = coco::encode(binary[i].data_ptr<uint8_t>(), h, w);
      entry["segmentation"] = {{"size", {h, w}}, {"counts", coco::to_string(rle)}};
    }
    entry["file_name"] = file_name;
    entries_.push_back(entry.dump());
  }
}

std::string ResultsJsonWriter::dump() const {
  std::string out = "[";
  for (size_t i = 0; i < entries_.size(); ++i) {
    out += i ? ",\n" : "\n";
    out += entries_[i];
  }
  out += entries_.empty() ? "]\n" : "\n]\n";
  return out;
}

std::map<std::string, int64_t> image_ids_by_file_name(const std::string& instances_json) {
  std::map<std::string, int64_t> ids;
  for (const auto& image : coco::Dataset::load(instances_json).images()) ids[image.file_name] = image.id;
  return ids;
}

}  // namespace instseg
