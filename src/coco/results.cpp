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

namespace {

Detection convert(const json& entry, size_t i, bool first_has_bbox, const std::string& source, const Dataset& ground_truth) {
  const Entry at{source, "results", i};
  if (!entry.is_object()) detail::fail(at, "", "expected an object");
  Detection d;
  d.image_id = detail::get_int(entry, "image_id", at);
  const int64_t image = ground_truth.image_index(d.image_id);
  if (image < 0) detail::fail(at, "image_id", "image id " + std::to_string(d.image_id) + " is not in the ground truth");
  d.category_id = detail::get_int(entry, "category_id", at);
  if (ground_truth.category_index(d.category_id) < 0) {
    detail::fail(at, "category_id", "category id " + std::to_string(d.category_id) + " is not in the ground truth");
  }
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
  return d;
}

}  // namespace

std::vector<Detection> parse_results(const std::string& json_text, const std::string& source,
                                     const Dataset& ground_truth) {
  // Elements are parsed one by one on all cores: a results file can hold millions of masks.
  std::vector<detail::Span> elements;
  if (!detail::split_array(json_text, {0, json_text.size()}, elements)) {
    const json root = detail::parse_json(json_text, source);  // throws the parser's message
    if (!root.is_array()) throw InputError(source + ": expected a JSON list of results");
    throw InputError(source + ": could not split the results list");
  }
  if (elements.empty()) throw InputError(source + ": the results list is empty (nothing to evaluate)");
  const json first = detail::parse_span(json_text, elements[0], {source, "results", 0});
  const bool first_has_bbox = first.is_object() && first.contains("bbox");
  std::vector<Detection> detections(elements.size());
  detail::for_each_element(
      json_text, elements,
      [&](const json& entry, size_t i) { detections[i] = convert(entry, i, first_has_bbox, source, ground_truth); },
      source, "results");
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
