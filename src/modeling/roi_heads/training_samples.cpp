#include "instseg/modeling/roi_heads/training_samples.h"

#include <torch/torch.h>

#include "instseg/modeling/matcher.h"
#include "instseg/modeling/sampler.h"
#include "instseg/ops/box_coder.h"
#include "instseg/ops/box_ops.h"

namespace instseg {

std::vector<RoiSample> select_training_samples(const std::vector<torch::Tensor>& proposals,
                                               const std::vector<Targets>& targets,
                                               const RoiHeadsOptions& options,
                                               std::optional<at::Generator> generator) {
  TORCH_CHECK(proposals.size() == targets.size(), "select_training_samples: ", proposals.size(),
              " proposal sets but ", targets.size(), " targets");
  const Matcher matcher(options.fg_iou_thresh, options.bg_iou_thresh, /*allow_low_quality_matches=*/false);
  const BalancedPositiveNegativeSampler sampler(options.batch_size_per_image, options.positive_fraction);
  ops::BoxCoder coder;
  coder.weights = options.bbox_reg_weights;

  std::vector<torch::Tensor> all_proposals, matched_idxs, labels;
  for (size_t i = 0; i < proposals.size(); ++i) {
    const auto& gt_boxes = targets[i].boxes.to(proposals[i].dtype());
    const auto candidates = torch::cat({proposals[i], gt_boxes});  // [P + G, 4]
    torch::Tensor matched, image_labels;
    if (gt_boxes.size(0) == 0) {
      // A negative image: every proposal is background.
      matched = torch::zeros({candidates.size(0)}, torch::kLong);
      image_labels = torch::zeros({candidates.size(0)}, torch::kLong);
    } else {
      const auto assignment = matcher(ops::box_iou(gt_boxes, candidates));
      matched = assignment.clamp_min(0);
      image_labels = targets[i].labels.index({matched});
      image_labels.masked_fill_(assignment == Matcher::kBelowLowThreshold, 0);
      image_labels.masked_fill_(assignment == Matcher::kBetweenThresholds, -1);
    }
    all_proposals.push_back(candidates);
    matched_idxs.push_back(matched);
    labels.push_back(image_labels);
  }

  const auto [positive, negative] = sampler(labels, generator);
  std::vector<RoiSample> samples(proposals.size());
  for (size_t i = 0; i < proposals.size(); ++i) {
    const auto keep = torch::where(positive[i].to(torch::kBool) | negative[i].to(torch::kBool))[0];
    auto& s = samples[i];
    s.proposals = all_proposals[i].index({keep});
    s.matched_idxs = matched_idxs[i].index({keep});
    s.labels = labels[i].index({keep});
    // Background proposals of a negative image are encoded against a dummy box, as torchvision;
    // their regression targets are never used by the loss.
    const auto gt_boxes = targets[i].boxes.size(0) > 0 ? targets[i].boxes.to(s.proposals.dtype())
                                                       : torch::zeros({1, 4}, s.proposals.options());
    s.regression_targets = coder.encode(gt_boxes.index({s.matched_idxs}), s.proposals);
  }
  return samples;
}

}  // namespace instseg
