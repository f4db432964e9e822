// The embedding API's masks, results text and evaluation (include/instseg/instseg.h), each over
// the library's one implementation: coco/rle.h, coco::ResultsWriter, the eval job.
#include <opencv2/core.hpp>

#include <ostream>
#include <streambuf>

#include "instseg/coco/results_writer.h"
#include "instseg/coco/rle.h"
#include "instseg/engine/eval_job.h"
#include "instseg/instseg.h"
#include "instseg/io/mask_polygons.h"

namespace instseg {

namespace {

coco::Rle to_rle(const RleMask& mask) {
  if (mask.height < 0 || mask.width < 0) {
    throw InputError("RleMask: negative size " + std::to_string(mask.height) + " x " + std::to_string(mask.width));
  }
  return coco::from_string(mask.counts, static_cast<uint32_t>(mask.height), static_cast<uint32_t>(mask.width));
}

// The eval job prints its tables; the API returns the numbers instead.
struct NullBuffer : std::streambuf {
  int overflow(int c) override { return c; }
};

EvalStats stats_of(const evaluation::EvalResult& result) {
  EvalStats s;
  s.stats = result.stats;
  s.summary = evaluation::summary_lines(result);
  return s;
}

}  // namespace

cv::Mat RleMask::to_mat() const {
  const std::vector<uint8_t> pixels = coco::decode(to_rle(*this));  // row-major 0/1
  cv::Mat out(height, width, CV_8UC1);
  if (!pixels.empty()) std::copy(pixels.begin(), pixels.end(), out.ptr<uint8_t>(0));
  return out;
}

std::vector<std::vector<double>> RleMask::to_polygons() const { return io::mask_polygons(to_rle(*this)); }

int64_t RleMask::area() const { return static_cast<int64_t>(coco::area(to_rle(*this))); }

RleMask RleMask::from_mat(const cv::Mat& mask) {
  if (mask.type() != CV_8UC1) throw InputError("RleMask::from_mat: need a CV_8UC1 mask, got type " + std::to_string(mask.type()));
  const cv::Mat dense = mask.isContinuous() ? mask : mask.clone();
  RleMask out;
  out.height = dense.rows;
  out.width = dense.cols;
  out.counts = coco::to_string(coco::encode(dense.ptr<uint8_t>(0), static_cast<uint32_t>(dense.rows),
                                            static_cast<uint32_t>(dense.cols)));
  return out;
}

std::string to_coco_results_json(const std::vector<ImageDetections>& images) {
  coco::ResultsWriter writer;
  for (const ImageDetections& image : images) {
    std::vector<coco::Detection> results;
    results.reserve(image.detections.size());
    for (const Detection& d : image.detections) {
      coco::Detection r;
      r.image_id = image.image_id;
      r.category_id = d.category_id;
      r.bbox = d.box;
      r.score = d.score;
      if (d.mask.height > 0 || d.mask.width > 0 || !d.mask.counts.empty()) r.mask = to_rle(d.mask);
      results.push_back(std::move(r));
    }
    writer.add(results, image.file_name);
  }
  return writer.dump();
}

Evaluation evaluate(const std::string& ground_truth_json, const std::string& results_json, int threads) {
  EvalJobOptions options;
  options.gt = ground_truth_json;
  options.results = results_json;
  options.threads = threads;
  NullBuffer discard;
  std::ostream quiet(&discard);
  const EvalJobOutcome outcome = run_eval_job(options, quiet);  // bbox, then segm when every result has a mask
  Evaluation out;
  for (const auto& result : outcome.results) {
    if (result.iou_type == evaluation::IouType::kBbox) {
      out.box = stats_of(result);
    } else {
      out.has_masks = true;
      out.mask = stats_of(result);
    }
  }
  return out;
}

}  // namespace instseg
