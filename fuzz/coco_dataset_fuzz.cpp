// COCO instances files (include/instseg/coco/dataset.h), then what evaluation and training do with
// one: each annotation's mask (polygons rasterised, RLEs decoded) and an evaluation of the ground
// truth against itself. Documented refusal: InputError.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/errors.h"
#include "instseg/evaluation/coco_evaluator.h"

namespace {

namespace coco = instseg::coco;
namespace evaluation = instseg::evaluation;

void run(std::string_view text) {
  const coco::Dataset gt = coco::Dataset::parse(text, "fuzz.json");
  std::vector<coco::Detection> detections;
  bool all_masks = true;
  const size_t n = std::min<size_t>(gt.annotations().size(), 64);
  for (size_t i = 0; i < n; ++i) {
    const auto& a = gt.annotations()[i];
    const auto& image = gt.image(a.image_id);
    coco::Detection d;
    d.image_id = a.image_id;
    d.category_id = a.category_id;
    d.bbox = a.bbox;
    d.score = 1.0 / double(i + 1);
    try {
      coco::Rle mask = gt.annotation_rle(i);
      FUZZ_CHECK(mask.h == image.height && mask.w == image.width);
      coco::area(mask);
      d.mask = std::move(mask);
    } catch (const instseg::InputError&) {
      all_masks = false;
    }
    detections.push_back(std::move(d));
  }
  if (detections.empty()) return;
  evaluation::EvalOptions options;
  options.num_threads = 1;
  evaluation::evaluate(gt, detections, evaluation::IouType::kBbox, options);
  if (all_masks) evaluation::evaluate(gt, detections, evaluation::IouType::kSegm, options);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    run(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const instseg::InputError&) {
  }
  return 0;
}
