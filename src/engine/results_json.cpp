#include "instseg/engine/results_json.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "instseg/coco/dataset.h"
#include "instseg/coco/rle.h"

namespace instseg {

std::vector<coco::Detection> to_coco_detections(int64_t image_id, const Detections& detections,
                                                double mask_thresh) {
  const auto boxes = detections.boxes.to(torch::kCPU, torch::kDouble).contiguous();
  const auto scores = detections.scores.to(torch::kCPU, torch::kDouble).contiguous();
  const auto labels = detections.labels.to(torch::kCPU, torch::kLong).contiguous();
  const bool has_masks = detections.masks.defined() && detections.masks.numel() > 0;
  // All masks binarised at once: [K, H, W] uint8, row-major per mask as the RLE encoder expects.
  const auto binary = has_masks ? (detections.masks.select(1, 0) > mask_thresh)
                                      .to(torch::kCPU, torch::kUInt8)
                                      .contiguous()
                                : torch::Tensor();
  const auto* b = boxes.data_ptr<double>();
  std::vector<coco::Detection> out(static_cast<size_t>(scores.size(0)));
  for (int64_t i = 0; i < scores.size(0); ++i) {
    auto& d = out[static_cast<size_t>(i)];
    d.image_id = image_id;
    d.category_id = labels[i].item<int64_t>();
    d.bbox = {b[4 * i], b[4 * i + 1], b[4 * i + 2] - b[4 * i], b[4 * i + 3] - b[4 * i + 1]};
    d.score = scores[i].item<double>();
    if (has_masks) {
      d.mask = coco::encode(binary[i].data_ptr<uint8_t>(), static_cast<uint32_t>(binary.size(1)),
                            static_cast<uint32_t>(binary.size(2)));
    }
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

void ResultsJsonWriter::add(int64_t image_id, const std::string& file_name, const Detections& detections) {
  for (const auto& d : to_coco_detections(image_id, detections)) {
    nlohmann::json entry = {{"image_id", d.image_id},
                            {"category_id", d.category_id},
                            {"bbox", d.bbox},
                            {"score", d.score}};
    if (d.mask) {
      entry["segmentation"] = {{"size", {d.mask->h, d.mask->w}}, {"counts", coco::to_string(*d.mask)}};
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
  const coco::Dataset dataset = coco::Dataset::load(instances_json);  // must outlive the loop
  std::map<std::string, int64_t> ids;
  for (const auto& image : dataset.images()) ids[image.file_name] = image.id;
  return ids;
}

}  // namespace instseg
