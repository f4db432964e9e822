// COCO results files (include/instseg/coco/results.h) read against a fixed ground truth (the
// evaluation fixture public_synth_gt.json: 5 images, masks of several sizes), in memory and from a
// file with masks left compressed, then evaluated; and what the writer (coco/results_writer.h)
// writes of them reads back as the same results. Documented refusal: InputError.
#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/coco/results_writer.h"
#include "instseg/errors.h"
#include "instseg/evaluation/coco_evaluator.h"

namespace {

namespace coco = instseg::coco;
namespace evaluation = instseg::evaluation;

const coco::Dataset& ground_truth() {
  static const coco::Dataset gt =
      coco::Dataset::load(INSTSEG_SOURCE_DIR "/tests/fixtures/coco_eval/gt/public_synth_gt.json");
  return gt;
}

}  // namespace

using instseg::fuzz::accepted;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const coco::Dataset& gt = ground_truth();
  evaluation::EvalOptions options;
  options.num_threads = 1;
  std::vector<coco::Detection> parsed;
  const bool in_memory = accepted([&] {
    parsed = coco::parse_results(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json", gt);
  });
  if (in_memory) {
    // What the writer writes of accepted results, the reader reads back as the same results.
    coco::ResultsWriter writer;
    writer.add(parsed, "fuzz.jpg");
    const auto back = coco::parse_results(writer.dump(), "written.json", gt);
    FUZZ_CHECK(back.size() == parsed.size());
    for (size_t i = 0; i < back.size(); ++i) {
      FUZZ_CHECK(back[i].image_id == parsed[i].image_id && back[i].category_id == parsed[i].category_id);
      FUZZ_CHECK(back[i].has_bbox == parsed[i].has_bbox && back[i].bbox == parsed[i].bbox);
      FUZZ_CHECK(back[i].score == parsed[i].score);
      FUZZ_CHECK(back[i].mask.has_value() == parsed[i].mask.has_value());
      if (back[i].mask) FUZZ_CHECK(back[i].mask->counts == parsed[i].mask->counts);
    }
  }
  if (in_memory && parsed.size() <= 256) {
    accepted([&] {
      const bool masks = std::all_of(parsed.begin(), parsed.end(), [](const auto& d) { return d.mask.has_value(); });
      evaluation::evaluate(gt, parsed, evaluation::IouType::kBbox, options);
      if (masks) evaluation::evaluate(gt, parsed, evaluation::IouType::kSegm, options);
    });
  }
  static const std::string path = instseg::fuzz::scratch_path(".json");
  instseg::fuzz::write_scratch(path, data, size);
  const bool from_file = accepted([&] {
    const auto results = coco::CompressedResults::read(path, gt);
    if (!in_memory) return;  // reported below
    FUZZ_CHECK(results.detections().size() == parsed.size());
    coco::Rle mask;
    std::string text;
    for (size_t i = 0; i < results.detections().size(); ++i) {
      FUZZ_CHECK(results.has_mask(i) == parsed[i].mask.has_value());
      if (!results.has_mask(i)) continue;
      results.decode_mask(i, mask, text);
      FUZZ_CHECK(mask.counts == parsed[i].mask->counts);
    }
  });
  std::remove(path.c_str());
  // Both readers validate the same way.
  FUZZ_CHECK(in_memory == from_file);
  return 0;
}
