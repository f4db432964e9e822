#pragma once
// instseg's embedding API: a Mask R-CNN loaded once, answering for OpenCV pictures, with typed
// detections, COCO results text and COCO evaluation. The one header a C++ product includes
// (find_package(instseg), target instseg::instseg: docs/api.md). It names no LibTorch type: the
// model lives behind a pointer (pimpl), so including this costs OpenCV's core header only.
//
//   instseg::Model model = instseg::Model::load("runs/first");      // or a torchvision .pth
//   for (const instseg::Detection& d : model.predict(cv::imread("street.jpg")))
//     std::cout << d.category_name << " " << d.score << "\n";
//
// Errors are the library's exceptions (instseg/errors.h): CheckpointError for weights that cannot
// be read or do not fit, ConfigError for options out of range, InputError for pictures and files.
#include <opencv2/core.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "instseg/errors.h"

namespace at {
class Tensor;  // torch::Tensor; callers of Model::predict(const at::Tensor&) include <torch/types.h>
}

namespace instseg {

// Settings applied over the model's own description (a run's config.json, else torchvision's
// inference defaults); the zero / negative / empty defaults keep the model's, as `instseg predict`.
struct ModelOptions {
  int threads = 0;                // intra-op threads; 0 = every core. LibTorch's setting is process-wide
  // OpenBLAS threads (process-wide), set at load when > 0. 1 is what the instseg program runs
  // with (common/blas_threads.h): the box head's matrix products then sum in its order and the
  // scores equal predict's to the last bit; 0 leaves the process's setting alone.
  int blas_threads = 1;
  double score_thresh = -1.0;     // keep detections scoring above this, in [0, 1]; -1 = the model's
  int detections_per_image = 0;   // at most this many per image; 0 = the model's (torchvision: 100)
  int min_size = 0;               // input's shorter side in pixels; 0 = the model's (torchvision: 800)
  int max_size = 0;               // cap of the longer side; 0 = the model's (torchvision: 1333)
  std::string mask_paste;         // "torchvision" | "aligned"; "" = the model's
  // The arithmetic, as `instseg predict --precision`: "fp32" (results equal the reference's within
  // float rounding) or "bf16" (weights and activations bfloat16, fp32 accumulation: ~3x faster on
  // CPUs with AVX512-BF16 / AMX, slower without; its effect on outputs: docs/precision.md).
  std::string precision = "fp32";
  // predict_file() refuses larger pictures from their header, before decoding (~45 bytes per
  // pixel while predicting: docs/model.md); predict(cv::Mat) refuses them too.
  int64_t max_image_pixels = 0;   // 0 = predict's default (data::kDefaultMaxImagePixels)
  void validate() const;          // ConfigError naming the field
};

// A binary mask of an image, COCO's compressed run-length encoding: the "segmentation" of a
// predictions.json entry, {"size": [height, width], "counts": "..."}.
struct RleMask {
  int height = 0;
  int width = 0;
  std::string counts;  // pycocotools' compressed counts string (column-major runs)

  // height x width CV_8UC1 of 0 and 1. InputError when `counts` is malformed or does not fill the size.
  cv::Mat to_mat() const;
  // The outer boundary of each connected part (8-connected, holes filled), as COCO polygons
  // [x0, y0, x1, y1, ...] through the centres of its border pixels; parts of fewer than 3 vertices
  // are left out (io/mask_polygons.h, what `instseg serve` answers for mask_format=polygon).
  std::vector<std::vector<double>> to_polygons() const;
  // Pixels that are 1.
  int64_t area() const;
  // Encodes a CV_8UC1 mask (non-zero = foreground), as pycocotools.mask.encode.
  static RleMask from_mat(const cv::Mat& mask);
};

// One detected object, in the pixels of the picture given to predict().
struct Detection {
  int64_t category_id = 0;    // the data's category id (a run's categories.json; torchvision: COCO's)
  std::string category_name;  // its name
  double score = 0.0;         // in (score_thresh, 1], detections in descending order
  std::array<double, 4> box{};  // [x, y, width, height], as predictions.json's "bbox"
  RleMask mask;               // the mask binarised at 0.5 (empty size for a model without masks)
};

// What a loaded model is and how it runs (after ModelOptions applied).
struct ModelInfo {
  std::string weights;      // the .pth read
  std::string config_file;  // the config.json that described it; "" for a bare torchvision checkpoint
  std::string architecture;  // e.g. "maskrcnn_resnet50_fpn" / "maskrcnn_resnet18_fpn_v2"
  int backbone_depth = 50;
  int num_classes = 0;      // including background
  // Per model label 1..num_classes-1 (index 0 is the background): category ids and names.
  std::vector<int64_t> category_ids;
  std::vector<std::string> category_names;
  std::vector<int> min_size;  // input's shorter side (one per training scale; predict uses the last)
  int max_size = 0;
  double score_thresh = 0.0;
  int detections_per_image = 0;
  std::string mask_paste;   // "torchvision" | "aligned"
  std::string precision;    // "fp32" | "bf16" (ModelOptions::precision)
};

// A model loaded for inference. Copies share one model; calls on one model (and its copies) are
// serialised, so one Model may be used from several threads (one picture at a time).
class Model {
 public:
  // `path`: a run folder (config.json + model_last.pth), a .pth beside its config.json, or a bare
  // torchvision Mask R-CNN checkpoint (architecture recognised from its tensors), as
  // `instseg predict --weights`. Throws CheckpointError / ConfigError naming the file.
  static Model load(const std::string& path, const ModelOptions& options = {});

  // A picture as cv::imread or cv::VideoCapture give it: 8- or 16-bit, 1, 3 (BGR) or 4 (BGRA)
  // channels. The detections are exactly `instseg predict`'s for the same pixels.
  std::vector<Detection> predict(const cv::Mat& image) const;
  // A picture as torchvision's models take it: [3, H, W] float RGB in [0, 1], on the CPU.
  // InputError for another shape or type.
  std::vector<Detection> predict(const at::Tensor& image) const;
  // An image file, read as `instseg predict` reads it (pixel limit checked from its header).
  std::vector<Detection> predict_file(const std::string& path) const;

  ModelInfo info() const;

 private:
  struct Impl;
  explicit Model(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// One picture's detections for a results file.
struct ImageDetections {
  int64_t image_id = 1;           // COCO image id (with a ground truth: its id of this picture)
  std::string file_name;          // written as "file_name" when not empty (predict writes it)
  std::vector<Detection> detections;
};

// The COCO results JSON `instseg predict` writes as predictions.json, byte for byte for the same
// detections, ids and file names: one entry per detection, in order.
std::string to_coco_results_json(const std::vector<ImageDetections>& images);

// COCO's 12 summary numbers of one IoU type (COCOeval.stats): [0] AP@[.50:.95], [1] AP50,
// [2] AP75, [3..5] AP small/medium/large, [6..8] AR@1/10/100, [9..11] AR small/medium/large;
// -1 where undefined.
struct EvalStats {
  std::array<double, 12> stats{};
  std::vector<std::string> summary;  // the 12 lines COCOeval.summarize() prints
  double ap() const { return stats[0]; }
};

struct Evaluation {
  EvalStats box;
  bool has_masks = false;  // every result has a "segmentation": mask AP below
  EvalStats mask;
};

// `instseg eval`'s numbers (pycocotools' COCOeval): a COCO instances JSON (ground truth) and a
// results JSON (predictions.json, to_coco_results_json's text written to a file). Throws
// InputError naming the file, the result and the field for bad input.
Evaluation evaluate(const std::string& ground_truth_json, const std::string& results_json, int threads = 0);

}  // namespace instseg
