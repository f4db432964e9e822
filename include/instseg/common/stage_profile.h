#pragma once
// Wall time per stage of a computation, for `predict --profile` and bench/predict_bench: where an
// image's time goes, stage by stage. Torch-free.
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace instseg {

// Seconds per named stage, accumulated over calls, in the order stages were first seen.
// predict's stages (modeling/mask_rcnn.h): transform, backbone.body, backbone.fpn, rpn.head,
// rpn.proposals, box.roi_align, box.head, box.postprocess, mask.roi_align, mask.head,
// mask.predictor, paste.
struct StageProfile {
  std::vector<std::pair<std::string, double>> seconds;
  void add(const std::string& stage, double s);
  // How much work the stages saw, accumulated as the seconds: predict counts "proposals" (what the
  // box head ran on) and "detections" (what the mask head ran on), for GFLOP per stage.
  std::vector<std::pair<std::string, int64_t>> counts;
  void count(const std::string& what, int64_t n);
  int64_t count_of(const std::string& what) const;  // 0 when never counted
};

// Adds the wall time from construction to stop() (or destruction) to `profile` under `stage`.
// With a null profile it times nothing, so stages can be timed unconditionally.
class StageTimer {
 public:
  StageTimer(StageProfile* profile, const char* stage);
  ~StageTimer() { stop(); }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;
  void stop();

 private:
  StageProfile* profile_;
  const char* stage_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace instseg
