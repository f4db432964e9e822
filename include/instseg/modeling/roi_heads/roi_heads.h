#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "instseg/modeling/layers/norm.h"
#include "instseg/modeling/roi_heads/box_head.h"
#include "instseg/modeling/roi_heads/box_predictor.h"
#include "instseg/modeling/roi_heads/losses.h"
#include "instseg/modeling/roi_heads/mask_head.h"
#include "instseg/modeling/roi_heads/mask_predictor.h"
#include "instseg/modeling/roi_heads/poolers.h"
#include "instseg/ops/fused_conv.h"
#include "instseg/structures/detections.h"
#include "instseg/structures/image_list.h"

namespace instseg {

struct RoiHeadsOptions {
  double score_thresh = 0.05;        // inference: class scores at or below are dropped
  double nms_thresh = 0.5;           // inference: per-class NMS IoU
  int64_t detections_per_img = 100;  // inference: best detections kept per image
  double fg_iou_thresh = 0.5;        // training: proposals with IoU >= this are foreground
  double bg_iou_thresh = 0.5;        // training: proposals with IoU < this are background
  int64_t batch_size_per_image = 512;  // training: proposals sampled per image for the losses
  double positive_fraction = 0.25;     // training: at most this share of the sample is foreground
  std::array<double, 4> bbox_reg_weights{10.0, 10.0, 5.0, 5.0};  // BoxCoder weights (x, y, w, h)
  BoxHeadKind box_head = BoxHeadKind::kTwoMlp;  // kTwoMlp for v1, kConvFc for v2 (set by the variant)
  NormKind head_norm = NormKind::kNone;         // box/mask head norm: kNone v1, kBatchNorm v2
  int64_t representation_size = 1024;  // box head output features (torchvision: 1024)
  int64_t mask_channels = 256;         // channels of the mask head's convs and deconv (torchvision: 256)
  void validate() const;  // throws ConfigError naming the roi_heads.* field
};

// postprocess_detections() of one image step by step, for inspection (explain, tests).
struct DetectionSteps {
  // One candidate per (proposal, foreground class) with score > score_thresh and a box of at
  // least 1e-2 px, before per-class NMS (proposal-major, class-minor order).
  torch::Tensor boxes;      // [M, 4] class-specific refined boxes, clipped (resized pixels)
  torch::Tensor scores;     // [M] softmax score of the class
  torch::Tensor labels;     // [M] int64 class
  torch::Tensor proposals;  // [M] int64 index of the candidate's proposal in the image's list
  torch::Tensor kept;  // [K] indices into the candidates: per-class NMS, best detections_per_img
};
std::vector<DetectionSteps> detection_steps(const torch::Tensor& class_logits,
                                            const torch::Tensor& box_deltas,
                                            const std::vector<torch::Tensor>& proposals,
                                            const std::vector<std::array<int64_t, 2>>& image_sizes,
                                            const RoiHeadsOptions& options);

// Class-specific detections before the mask branch, as torchvision's postprocess_detections:
// softmax, decode each class's deltas, clip to the image, drop background, scores <= score_thresh
// and boxes under 1e-2 px, NMS per class, best detections_per_img.
// class_logits [R, C], box_deltas [R, 4C], proposals [R_i, 4] per image (sum R_i = R).
// Returns Detections (boxes [K_i, 4], scores [K_i], labels [K_i], masks undefined) per image.
std::vector<Detections> postprocess_detections(const torch::Tensor& class_logits,
                                               const torch::Tensor& box_deltas,
                                               const std::vector<torch::Tensor>& proposals,
                                               const std::vector<std::array<int64_t, 2>>& image_sizes,
                                               const RoiHeadsOptions& options);

// The box and mask branches of Mask R-CNN on FPN features (torchvision's RoIHeads). Children
// box_head, box_predictor, mask_head, mask_predictor (the poolers hold no parameters).
struct StageProfile;
struct FusedRoiHeads;

class RoiHeadsImpl : public torch::nn::Module {
 public:
  // The poolers read FPN maps "0".."<feature_levels - 1>" (torchvision's MultiScaleRoIAlign over
  // the maps present; "pool" never).
  RoiHeadsImpl(int64_t in_channels, int64_t num_classes, RoiHeadsOptions options, int64_t feature_levels = 4);

  // Inference. features: the FPN maps (those pooled named above); proposals [R_i, 4] per image and image_sizes
  // (height, width) in the resized images' pixels. Returns per image boxes, scores, labels and
  // masks [K_i, 1, 28, 28]: the predicted class's mask probabilities, not yet pasted.
  // With `profile`, adds box.roi_align, box.head, box.postprocess, mask.roi_align, mask.head and
  // mask.predictor.
  std::vector<Detections> forward(const FeatureMaps& features,
                                  const std::vector<torch::Tensor>& proposals,
                                  const std::vector<std::array<int64_t, 2>>& image_sizes,
                                  StageProfile* profile = nullptr);

  // As forward(), keeping the box branch's outputs and each image's detection steps.
  struct Inspection {
    torch::Tensor class_logits;          // [R, C]
    torch::Tensor box_deltas;            // [R, 4C]
    std::vector<DetectionSteps> steps;   // per image
    std::vector<Detections> detections;  // forward()'s
  };
  Inspection inspect(const FeatureMaps& features, const std::vector<torch::Tensor>& proposals,
                     const std::vector<std::array<int64_t, 2>>& image_sizes, StageProfile* profile = nullptr);

  // The fused form (MaskRcnn::prepare_inference): box and mask heads with norms folded and
  // ReLUs fused, fully-connected layers on oneDNN reading the channels-last pooled features as
  // they lie (fc6's columns permuted once), cls_score and bbox_pred as one product, conv5_mask as
  // a 1x1 convolution to 4x channels, and the mask logits of each detection's own class only.
  // forward() and inspect() run it outside training; losses() never does.
  void prepare_inference(ops::InferencePrecision precision);
  void drop_prepared_inference() { fused_.reset(); }
  // The kernels of the box head's and box predictor's fully-connected layers (ops/linear.h):
  // kLibTorch (the default, torchvision's) or kOneDnn, which MaskRcnn::set_channels_last_training
  // picks with the channels-last layout.
  void set_linear_kernel(ops::LinearKernel kernel);

  // Box branch: pooled 7x7 features -> (class_logits [R, C], box_deltas [R, 4C]).
  std::pair<torch::Tensor, torch::Tensor> predict_boxes(
      const FeatureMaps& features, const std::vector<torch::Tensor>& proposals,
      const std::vector<std::array<int64_t, 2>>& image_sizes);

  // Mask branch: pooled 14x14 features of boxes [K_i, 4] per image -> logits [K, C, 28, 28].
  torch::Tensor predict_mask_logits(const FeatureMaps& features,
                                    const std::vector<torch::Tensor>& boxes,
                                    const std::vector<std::array<int64_t, 2>>& image_sizes);

  // Training losses {loss_classifier, loss_box_reg, loss_mask} of a given sample, as torchvision's
  // RoIHeads in training mode after select_training_samples: the box branch on every sampled
  // proposal, the mask branch on the foreground ones. samples: per image; targets: ground truth
  // in resized pixels (masks [G_i, H_i, W_i]).
  std::map<std::string, torch::Tensor> losses(const FeatureMaps& features,
                                              const std::vector<std::array<int64_t, 2>>& image_sizes,
                                              const std::vector<RoiSample>& samples,
                                              const std::vector<Targets>& targets);

  const RoiHeadsOptions& options() const { return options_; }
  const MultiScaleRoiAlign& box_roi_pool() const { return box_roi_pool_; }
  const MultiScaleRoiAlign& mask_roi_pool() const { return mask_roi_pool_; }

  torch::nn::AnyModule box_head;  // TwoMlpHead or ConvFcHead: [R, C, 7, 7] -> [R, 1024]
  FastRcnnPredictor box_predictor{nullptr};
  MaskRcnnHeads mask_head{nullptr};
  MaskRcnnPredictor mask_predictor{nullptr};

 private:
  std::pair<torch::Tensor, torch::Tensor> predict_boxes_timed(const FeatureMaps& features,
                                                              const std::vector<torch::Tensor>& proposals,
                                                              const std::vector<std::array<int64_t, 2>>& image_sizes,
                                                              StageProfile* profile);

  RoiHeadsOptions options_;
  std::shared_ptr<const FusedRoiHeads> fused_;
  MultiScaleRoiAlign box_roi_pool_;
  MultiScaleRoiAlign mask_roi_pool_;
};
TORCH_MODULE(RoiHeads);

}  // namespace instseg
