#include "serve/response.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "instseg/coco/results_writer.h"
#include "instseg/io/mask_polygons.h"

namespace instseg::serve {

namespace {

// The writer's one entry for `d`: "[\n{...}\n]\n" minus the brackets.
std::string writer_entry(const coco::Detection& d) {
  coco::ResultsWriter writer;
  writer.add({d});
  const std::string text = writer.dump();
  return text.substr(2, text.size() - 5);
}

}  // namespace

std::string predict_json(const PredictAnswer& answer, const std::vector<coco::Detection>& results,
                         const ImagePredictor& predictor, const PredictQuery& query) {
  std::map<int64_t, std::string> names;
  const auto& classes = predictor.class_names();
  for (size_t label = 1; label < classes.size(); ++label) names[predictor.category_id_of(label)] = classes[label];

  std::vector<size_t> kept;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!query.score_thresh || results[i].score >= *query.score_thresh) kept.push_back(i);
  }
  if (query.max_detections && kept.size() > static_cast<size_t>(*query.max_detections)) {
    // The N best by score, in the model's order (which is by score already).
    std::vector<size_t> by_score = kept;
    std::stable_sort(by_score.begin(), by_score.end(),
                     [&](size_t a, size_t b) { return results[a].score > results[b].score; });
    by_score.resize(*query.max_detections);
    std::sort(by_score.begin(), by_score.end());
    kept = by_score;
  }

  nlohmann::json head = {{"width", answer.width}, {"height", answer.height}, {"model_seconds", answer.model_seconds},
                         {"queue_seconds", answer.queue_seconds}, {"batch_size", answer.batch_size}};
  std::string out = head.dump();
  out.pop_back();  // '}': the results follow
  out += ",\"results\":[";
  bool first = true;
  for (size_t i : kept) {
    coco::Detection d = results[i];
    std::string polygons;
    if (query.mask_format != MaskFormat::kRle) {
      if (query.mask_format == MaskFormat::kPolygon && d.mask) polygons = nlohmann::json(io::mask_polygons(*d.mask)).dump();
      d.mask.reset();
    }
    std::string entry = writer_entry(d);
    const auto name = names.find(d.category_id);
    entry.insert(1, "\"category\":" + nlohmann::json(name == names.end() ? std::string() : name->second).dump() + ",");
    if (!polygons.empty()) entry.insert(entry.size() - 1, ",\"segmentation\":" + polygons);
    out += first ? "\n" : ",\n";
    out += entry;
    first = false;
  }
  out += kept.empty() ? "]}\n" : "\n]}\n";
  return out;
}

std::string error_json(int status, const std::string& message) {
  // A message may quote what the client sent: invalid UTF-8 is replaced, not an exception.
  return nlohmann::json{{"error", {{"status", status}, {"message", message}}}}.dump(
             -1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

}  // namespace instseg::serve
