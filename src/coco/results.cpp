#include "instseg/coco/results.h"

#include <nlohmann/json.hpp>

#include "coco/json_fields.h"
#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg::coco {

using detail::Entry;
using nlohmann::json;

std::vector<Detection> read_results(const std::string& path, const Dataset& ground_truth) {
  return parse_results(detail::read_text(path), path, ground_truth);
}

std::vector<Detection> parse_results(const std::string& json_text, const std::string& source,
                                     const Dataset& ground_truth) {
  const json root = detail::parse_json(json_text, source);
  if (!root.is_array()) throw InputError(source + ": expected a JSON list of results");
  if (root.empty()) throw InputError(source + ": the results list is empty (nothing to evaluate)");
  std::vector<Detection> detections;
  detections.reserve(root.size());
  const bool first_has_bbox = root[0].is_object() && root[0].contains("bbox");
  for (size_t i = 0; i < root.size(); ++i) {
    const Entry at{source, "results", i};
    const json& entry = root[i];
    if (!entry.is_object()) detail::fail(at, "", "expected an object");
    Detection d;
    d.image_id = detail::get_int(entry, "image_id", at);
    const int64_t image = ground_truth.image_index(d.image_id);
    if (image < 0) detail::fail(at, "image_id", "image id " + std::to_string(d.image_id) + " is not in the ground truth");
    d.category_id = detail::get_int(entry, "category_id", at);
    if (ground_truth.category_index(d.category_id) < 0) {
      detail::fail(at, "category_id", "category id " + std::to_string(d.category_id) + " is not in the ground truth");
    }
    const json& score = detail::require(entry, "score", at);
    if (!score.is_number()) detail::fail(at, "score", "expected a number, got " + score.dump());
    d.score = detail::get_number(entry, "score", at);
    d.has_bbox = entry.contains("bbox");
    if (d.has_bbox) {
      d.bbox = detail::get_box(entry, "bbox", at);
    } else if (first_has_bbox) {
      detail::fail(at, "bbox", "missing, but the first result has one (pycocotools needs it on all)");
    }
    const auto segmentation = entry.find("segmentation");
    if (segmentation != entry.end()) {
      const Image& im = ground_truth.images()[size_t(image)];
      Segmentation s = detail::get_segmentation(*segmentation, im.height, im.width, at);
      if (s.kind != Segmentation::Kind::kRle) detail::fail(at, "segmentation", "results masks must be RLE {size, counts}");
      d.mask = std::move(s.rle);
    } else if (!d.has_bbox) {
      detail::fail(at, "", "needs a \"bbox\" or a \"segmentation\"");
    }
    detections.push_back(std::move(d));
  }
  return detections;
}

void write_results(const std::string& path, const std::vector<Detection>& detections) {
  json out = json::array();
  for (const Detection& d : detections) {
    json entry = {{"image_id", d.image_id}, {"category_id", d.category_id}, {"score", d.score}};
    if (d.has_bbox) entry["bbox"] = d.bbox;
    if (d.mask) entry["segmentation"] = {{"size", {d.mask->h, d.mask->w}}, {"counts", to_string(*d.mask)}};
    out.push_back(std::move(entry));
  }
  write_file_atomically(path, [&](std::ostream& stream) { stream << out.dump(); });
}

}  // namespace instseg::coco
