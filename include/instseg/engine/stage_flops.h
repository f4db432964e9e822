#pragma once
// Arithmetic per stage of predict, counted from the model's description (not measured), and the
// report `predict --profile` prints: each stage's time (common/stage_profile.h) beside its GFLOP
// and GFLOP/s, and the machine's measured convolution rate to compare them with.
//
// Counting convention (as torchvision's published GFLOPs and fvcore's): convolutions and
// fully-connected layers only, one multiply-add = 2 FLOP; a convolution is
// 2 * KH * KW * Cin * Cout * Hout * Wout, a linear layer 2 * I * O per row. Norms, ReLUs, residual
// adds, pooling, RoIAlign, NMS and pasting count 0 (they are memory-bound, and small beside the
// convolutions). What is counted is what the fused path computes (MaskRcnn::prepare_inference):
// the RPN's objectness and deltas as one 1x1 convolution, the box predictor's class scores and
// deltas as one product, conv5_mask at 14x14, the mask logits of the detected class only.
#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "instseg/modeling/mask_rcnn.h"
#include "instseg/ops/fused_conv.h"

namespace instseg {

struct StageProfile;

// FLOP per named stage (the stage names of common/stage_profile.h), accumulated over images.
struct StageFlops {
  std::vector<std::pair<std::string, double>> flops;
  void add(const std::string& stage, double f);
  void add(const StageFlops& other);
  double of(const std::string& stage) const;  // 0 when never counted
  double total() const;
};

// The batch an image of height x width becomes: resized as the model's transform does (last
// min_size, max_size cap), then padded to transform.size_divisible. [H, W].
std::array<int64_t, 2> padded_input_size(const MaskRcnnOptions& options, int64_t height, int64_t width);

// The most proposals the RPN can hand the box head for an input of `input_size` (padded):
// min(post_nms_top_n_test, sum over levels of min(pre_nms_top_n_test, anchors of the level)).
// NMS may leave fewer; this is the count predict --profile uses.
int64_t max_proposals(const MaskRcnnOptions& options, std::array<int64_t, 2> input_size);

// The ResNet body's convolutions (conv1 to layer4, no classifier) for an input of height x width.
double resnet_body_flops(int depth, int64_t height, int64_t width);

// One image's FLOP per stage: backbone.body, backbone.fpn, rpn.head, box.head, mask.head (and,
// with fused = false, mask.predictor: the module path's separate stage, all classes' logits).
// `input_size` is the padded batch (padded_input_size), `proposals` the rows the box head runs on,
// `detections` the masks computed. Stages without convolutions are listed with 0.
StageFlops stage_flops(const MaskRcnnOptions& options, std::array<int64_t, 2> input_size, int64_t proposals,
                       int64_t detections, bool fused = true);

// The machine's convolution rate in GFLOP/s: ops::FusedConv2d 3x3 256->256 on a channels-last
// [1, 256, 200, 304] input (an 800x1216 image's stride-4 FPN level) in `precision`, on the
// current intra-op threads; one warm-up, then the best of `repetitions`.
double measured_conv_peak_gflops(ops::InferencePrecision precision, int repetitions = 3);

// "Intel(R) Xeon(R) ..." from /proc/cpuinfo, with " (avx512_bf16, amx_bf16)" for the flags that
// matter to bf16 when present; "unknown" without /proc/cpuinfo.
std::string cpu_model();

// What predict --profile reports: per stage, time and arithmetic per image and their rates.
struct ProfileReport {
  struct Row {
    std::string stage;
    double ms_per_image = 0.0;
    double share = 0.0;            // of the model time (predict_box_masks + paste)
    double gflop_per_image = 0.0;  // 0: no convolutions counted
    double gflops = 0.0;           // GFLOP/s; 0 where gflop_per_image is 0
    double peak_share = 0.0;       // gflops / peak_gflops
  };
  std::vector<Row> rows;          // in the order the stages ran
  int64_t images = 0;
  double model_ms_per_image = 0.0;
  double stages_ms_per_image = 0.0;  // the rows' sum
  double gflop_per_image = 0.0;      // the rows' sum
  double peak_gflops = 0.0;
  std::string precision;  // "fp32", "bf16" (ops::to_string), or "fp32 (unfused)"
  std::string cpu;        // cpu_model()
  // The proposals per image box.head's GFLOP were counted at, and whether that is the number the
  // box head ran on (counted) or max_proposals(), an upper bound (NMS may leave fewer: box.head's
  // GFLOP/s are then overstated). Printed under the table.
  double proposals_per_image = 0.0;
  bool proposals_counted = false;

  // seconds and flops are totals over `images`; model_seconds the sum of the images' model times.
  static ProfileReport make(const StageProfile& seconds, const StageFlops& flops, int64_t images,
                            double model_seconds, double peak_gflops, std::string precision, std::string cpu);
  std::string table() const;  // aligned columns, a header and a total line
  std::string json() const;   // the same numbers (profile.json)
};

}  // namespace instseg
