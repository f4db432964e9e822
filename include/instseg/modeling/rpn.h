#pragma once
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <array>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "instseg/modeling/anchor_generator.h"
#include "instseg/modeling/matcher.h"
#include "instseg/modeling/sampler.h"
#include "instseg/ops/fused_conv.h"
#include "instseg/structures/image_list.h"

namespace instseg {

struct RpnOptions {
  int64_t pre_nms_top_n_train = 2000;  // candidates kept per FPN level before NMS
  int64_t pre_nms_top_n_test = 1000;
  int64_t post_nms_top_n_train = 2000;  // proposals kept per image after NMS
  int64_t post_nms_top_n_test = 1000;
  double nms_thresh = 0.7;
  double score_thresh = 0.0;  // on sigmoid(objectness)
  double min_size = 1e-3;     // boxes narrower or shorter than this (resized pixels) are dropped
  double fg_iou_thresh = 0.7;  // training: anchors with IoU >= this are positives
  double bg_iou_thresh = 0.3;  // training: anchors with IoU < this are negatives
  int64_t batch_size_per_image = 256;  // training: anchors sampled per image for the losses
  double positive_fraction = 0.5;
  int conv_depth = 1;  // 3x3 conv + ReLU layers in the head: 1 for v1, 2 for v2
  void validate() const;  // throws ConfigError naming the rpn.* field
};

// Shared head over every FPN level: conv3x3+ReLU (x conv_depth), then per-anchor objectness
// logits and box deltas. Children conv."i"."0", cls_logits, bbox_pred, as torchvision's RPNHead.
struct StageProfile;
struct FusedRpnHead;

class RpnHeadImpl : public torch::nn::Module {
 public:
  RpnHeadImpl(int64_t in_channels, int64_t num_anchors, int conv_depth = 1);

  // features: [N, C, H_l, W_l] per level -> (objectness [N, A, H_l, W_l], deltas [N, 4A, H_l, W_l])
  // per level.
  std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> forward(
      const std::vector<torch::Tensor>& features);

  // The fused form (MaskRcnn::prepare_inference): the convolutions with their ReLU, and
  // cls_logits and bbox_pred as one 1x1 convolution; forward() runs it outside training. Its
  // outputs are channels-last views of one map per level.
  void prepare_inference(ops::InferencePrecision precision);
  void drop_prepared_inference() { fused_.reset(); }

  torch::nn::Sequential conv{nullptr};
  torch::nn::Conv2d cls_logits{nullptr}, bbox_pred{nullptr};

 private:
  std::shared_ptr<const FusedRpnHead> fused_;
};
TORCH_MODULE(RpnHead);

// Head outputs flattened to the anchors' order (level, row, column, anchor) and batched:
// objectness [N * T, 1] -> [N, T] here, deltas [N, T, 4], with T = sum_l H_l * W_l * A.
struct RpnPredictions {
  torch::Tensor objectness;                  // [N, T] logits
  torch::Tensor deltas;                      // [N, T, 4]
  std::vector<int64_t> anchors_per_level;    // H_l * W_l * A per level, summing to T
};
RpnPredictions flatten_rpn_outputs(const std::vector<torch::Tensor>& objectness,
                                   const std::vector<torch::Tensor>& deltas);

// The RPN's two loss terms over the sampled anchors of the whole batch, as torchvision's
// RegionProposalNetwork.compute_loss. Indices are into the batch-flattened anchors, so a test can
// pass exactly the anchors another implementation sampled.
//   objectness [T'] logits, deltas [T', 4], labels [T'] float (1 fg, 0 bg, -1 ignored),
//   regression_targets [T', 4], sampled_pos [P], sampled_neg [Q] int64 with T' = N * T.
struct RpnLosses {
  torch::Tensor objectness;  // BCE-with-logits, mean over the P + Q sampled anchors
  torch::Tensor box_reg;     // smooth-L1 (beta 1/9) summed over positives, / (P + Q)
};
RpnLosses rpn_losses(const torch::Tensor& objectness, const torch::Tensor& deltas,
                     const torch::Tensor& labels, const torch::Tensor& regression_targets,
                     const torch::Tensor& sampled_pos, const torch::Tensor& sampled_neg);

struct RpnTrainOutput {
  std::vector<torch::Tensor> proposals;  // [K_i, 4] per image, detached
  RpnLosses losses;
};

// How many proposals the RPN keeps: per FPN level before NMS, per image after it.
struct ProposalLimits {
  int64_t pre_nms_top_n;
  int64_t post_nms_top_n;
};

// Proposal selection of one image step by step: select_proposals() returns boxes and scores;
// explain and tests also look at the candidates NMS chose from.
struct ProposalSteps {
  // The pre_nms_top_n best anchors of each level by objectness (level after level, each by
  // decreasing score): decoded, clipped to the image, before small-box removal, the score
  // threshold and NMS.
  torch::Tensor candidate_boxes;    // [K, 4] resized-image pixels
  torch::Tensor candidate_scores;   // [K] sigmoid(objectness)
  torch::Tensor candidate_levels;   // [K] int64 feature level (0 = the first, finest map)
  torch::Tensor candidate_anchors;  // [K] int64 index into the image's anchors [T, 4]
  torch::Tensor kept;  // [P] int64 indices into the candidates kept by NMS, in output order
  torch::Tensor boxes;   // [P, 4] = candidate_boxes[kept]: the proposals
  torch::Tensor scores;  // [P] = candidate_scores[kept]
};

// What the RPN computes at inference on a batch, kept for inspection (RegionProposalNetwork::
// inspect); the proposals are forward()'s.
struct RpnInspection {
  std::vector<torch::Tensor> objectness;  // per level [N, A, H_l, W_l] logits
  std::vector<torch::Tensor> deltas;      // per level [N, 4A, H_l, W_l]
  std::vector<torch::Tensor> anchors;     // [T, 4] per image
  std::vector<ProposalSteps> steps;       // per image
};

// Region proposal network: head + anchors + torchvision's proposal selection. Child `head`.
// The entry point decides the top-n limits, not the module's mode (torchvision follows
// self.training): forward() keeps *_test, forward_train() *_train, in either mode, so losses
// computed in eval mode (validation) see the proposals training sees.
class RegionProposalNetworkImpl : public torch::nn::Module {
 public:
  RegionProposalNetworkImpl(int64_t in_channels, AnchorGeneratorOptions anchors, RpnOptions options);

  // Inference -> proposals [K_i, 4] (x1, y1, x2, y2) per image, in the resized image's pixels, by
  // decreasing objectness within each level's NMS result (K_i <= post_nms_top_n_test).
  // With `profile`, adds rpn.head and rpn.proposals.
  std::vector<torch::Tensor> forward(const ImageList& images, const FeatureMaps& features,
                                     StageProfile* profile = nullptr);

  // As forward(), keeping the head's maps, the anchors and each image's selection steps.
  RpnInspection inspect(const ImageList& images, const FeatureMaps& features);

  // Training: proposals as forward() but with the *_train top-n limits, and the two losses.
  // gt_boxes: [G_i, 4] per image in the resized image's pixels (G_i may be 0). Anchors are
  // sampled with `generator`, torch's default one when absent, so seeding torch reproduces
  // torchvision's choice.
  RpnTrainOutput forward_train(const ImageList& images, const FeatureMaps& features,
                               const std::vector<torch::Tensor>& gt_boxes,
                               std::optional<at::Generator> generator = std::nullopt);

  // Labels of one image's anchors [T, 4] against gt_boxes [G, 4], as torchvision's
  // assign_targets_to_anchors: (labels [T] float 1 fg / 0 bg / -1 ignored, matched boxes [T, 4]).
  std::pair<torch::Tensor, torch::Tensor> assign_targets(const torch::Tensor& anchors,
                                                         const torch::Tensor& gt_boxes) const;

  // Proposal selection alone: per level top-k on objectness, decode, clip, remove small, score
  // threshold, NMS per level, keep post_nms_top_n. proposals [N, T, 4], objectness [N, T].
  // Returns (boxes [K_i, 4], sigmoid scores [K_i]) per image.
  std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> select_proposals(
      const torch::Tensor& proposals, const torch::Tensor& objectness,
      const std::vector<std::array<int64_t, 2>>& image_sizes,
      const std::vector<int64_t>& anchors_per_level, ProposalLimits limits) const;
  // The same selection, step by step, per image.
  std::vector<ProposalSteps> select_proposal_steps(
      const torch::Tensor& proposals, const torch::Tensor& objectness,
      const std::vector<std::array<int64_t, 2>>& image_sizes,
      const std::vector<int64_t>& anchors_per_level, ProposalLimits limits) const;

  const RpnOptions& options() const { return options_; }
  AnchorGenerator& anchor_generator() { return anchor_generator_; }

  RpnHead head{nullptr};

 private:
  // Head outputs, anchors and decoded (detached) boxes of one batch, shared by both forwards.
  struct Pass {
    RpnPredictions predictions;
    std::vector<torch::Tensor> objectness, deltas;  // the head's per-level maps
    std::vector<torch::Tensor> anchors;  // [T, 4] per image
    std::vector<ProposalSteps> steps;    // per image
    std::vector<torch::Tensor> proposals;
  };
  Pass run(const ImageList& images, const FeatureMaps& features, ProposalLimits limits,
           StageProfile* profile = nullptr);

  RpnOptions options_;
  AnchorGenerator anchor_generator_;
  Matcher matcher_;
  BalancedPositiveNegativeSampler sampler_;
};
TORCH_MODULE(RegionProposalNetwork);

}  // namespace instseg
