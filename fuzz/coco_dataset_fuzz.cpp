// COCO instances files (include/instseg/coco/dataset.h), then what evaluation and training do with
// one: each annotation's mask (polygons rasterised, RLEs decoded) and an evaluation of the ground
// truth against itself; and what the writer (coco/instances_writer.h) writes of it reads back as
// the same dataset. Documented refusal: InputError.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "instseg/coco/dataset.h"
#include "instseg/coco/instances_writer.h"
#include "instseg/coco/results.h"
#include "instseg/errors.h"
#include "instseg/evaluation/coco_evaluator.h"

namespace {

namespace coco = instseg::coco;
namespace evaluation = instseg::evaluation;

// What the writer writes of an accepted file, the reader reads back as the same dataset.
void check_round_trip(const coco::Dataset& gt) {
  const coco::Dataset back = coco::Dataset::parse(coco::instances_json(gt), "written.json");
  FUZZ_CHECK(back.images().size() == gt.images().size());
  for (size_t i = 0; i < gt.images().size(); ++i) {
    const auto &a = gt.images()[i], &b = back.images()[i];
    FUZZ_CHECK(a.id == b.id && a.file_name == b.file_name && a.width == b.width && a.height == b.height);
  }
  FUZZ_CHECK(back.categories().size() == gt.categories().size());
  for (size_t i = 0; i < gt.categories().size(); ++i) {
    FUZZ_CHECK(back.categories()[i].id == gt.categories()[i].id && back.categories()[i].name == gt.categories()[i].name);
  }
  FUZZ_CHECK(back.annotations().size() == gt.annotations().size());
  for (size_t i = 0; i < gt.annotations().size(); ++i) {
    const auto &a = gt.annotations()[i], &b = back.annotations()[i];
    FUZZ_CHECK(a.id == b.id && a.image_id == b.image_id && a.category_id == b.category_id);
    FUZZ_CHECK(a.bbox == b.bbox && a.area == b.area && a.iscrowd == b.iscrowd);
    FUZZ_CHECK(a.segmentation.kind == b.segmentation.kind && a.segmentation.polygons == b.segmentation.polygons);
    FUZZ_CHECK(a.segmentation.rle.counts == b.segmentation.rle.counts);
  }
}

void run(std::string_view text) {
  const coco::Dataset gt = coco::Dataset::parse(text, "fuzz.json");
  check_round_trip(gt);
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
