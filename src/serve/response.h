#pragma once
// The JSON bodies of the server's answers.
#include <cstdint>
#include <string>
#include <vector>

#include "instseg/engine/image_predictor.h"
#include "serve/limits.h"

namespace instseg::serve {

struct PredictAnswer {
  int64_t width = 0, height = 0;
  double model_seconds = 0.0, queue_seconds = 0.0;
  int batch_size = 0;
};

// {"width", "height", "model_seconds", "queue_seconds", "batch_size", "results": [...]}. Each
// result is coco::ResultsWriter's entry for it (predictions.json's bytes, without "file_name")
// with "category" (the class name) put first; the query filters (score >= score_thresh, then the
// max_detections best) and sets the mask's form (rle: the writer's; polygon: io/mask_polygons.h;
// none: no "segmentation"). One result per line.
std::string predict_json(const PredictAnswer& answer, const std::vector<coco::Detection>& results,
                         const ImagePredictor& predictor, const PredictQuery& query);

// {"error": {"status": N, "message": "..."}}
std::string error_json(int status, const std::string& message);

}  // namespace instseg::serve
