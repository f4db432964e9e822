#pragma once
// COCO results ("detections") files: a JSON list of {image_id, category_id, bbox, score} with an
// optional compressed-RLE "segmentation". Read against a ground truth, which fixes the valid image
// and category ids and the mask sizes. Written by coco/results_writer.h.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/coco/rle.h"

namespace instseg::coco {

struct Detection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // [x, y, width, height] in image pixels
  bool has_bbox = true;          // false: a mask-only result (its box is the mask's box)
  double score = 0;
  std::optional<Rle> mask;       // at the image's size
};

// Reads and validates a results file. Throws InputError naming the file, the result index and the
// field for: a file that is not a list, an empty list (pycocotools fails on it too), an unknown
// image id (pycocotools asserts) or category id (pycocotools would silently drop it), a missing or
// non-finite score (NaN has no order), a malformed box or RLE, a mask whose size is not its
// image's, and results missing "bbox" when the first has one (pycocotools' KeyError).
std::vector<Detection> read_results(const std::string& path, const Dataset& ground_truth);
std::vector<Detection> parse_results(std::string_view json_text, const std::string& source,
                                     const Dataset& ground_truth);

// A results file read with its masks left compressed: each is decoded when evaluated, into memory
// the evaluator reuses. Decoded, a mask takes ~1 KB of runs: half a GB for a dense file of 500,000
// results, which costs more to page in than the evaluation itself (pycocotools keeps them
// compressed too). Validated as read_results (each mask is decoded once to check it).
class CompressedResults {
 public:
  static CompressedResults read(const std::string& path, const Dataset& ground_truth);
  CompressedResults(CompressedResults&&) noexcept;
  CompressedResults& operator=(CompressedResults&&) noexcept;
  ~CompressedResults();

  // The detections, every `mask` left empty: has_mask(i) tells whether result i has one.
  const std::vector<Detection>& detections() const { return detections_; }
  bool has_mask(size_t i) const;
  // Result i's mask (a result with one), decoded into `out`; `text` is a buffer for its counts.
  void decode_mask(size_t i, Rle& out, std::string& text) const;

 private:
  struct Storage;  // the mapped file, and where each mask is in it
  // No default constructor: evaluate(gt, {}, type) keeps meaning an empty detection list.
  explicit CompressedResults(std::unique_ptr<Storage> storage);
  std::vector<Detection> detections_;
  std::unique_ptr<Storage> storage_;
};

}  // namespace instseg::coco
