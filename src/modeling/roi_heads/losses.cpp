#include "instseg/modeling/roi_heads/losses.h"

#include <torch/torch.h>

#include "instseg/ops/roi_align.h"

namespace instseg {

FastRcnnLosses fastrcnn_loss(const torch::Tensor& class_logits, const torch::Tensor& box_deltas,
                             const torch::Tensor& labels, const torch::Tensor& regression_targets) {
  TORCH_CHECK(class_logits.size(0) == labels.size(0) && box_deltas.size(0) == labels.size(0) &&
                  regression_targets.size(0) == labels.size(0),
              "fastrcnn_loss: ", class_logits.size(0), " logits, ", box_deltas.size(0),
              " deltas, ", regression_targets.size(0), " targets for ", labels.size(0), " labels");
  const auto classifier = torch::nn::functional::cross_entropy(class_logits, labels);
  const auto positive = torch::where(labels > 0)[0];  // [P]
  const auto deltas = box_deltas.reshape({box_deltas.size(0), -1, 4});  // [S, C, 4]
  const auto box_reg =
      torch::nn::functional::smooth_l1_loss(
          deltas.index({positive, labels.index({positive})}), regression_targets.index({positive}),
          torch::nn::functional::SmoothL1LossFuncOptions().reduction(torch::kSum), /*beta=*/1.0 / 9) /
      labels.numel();
  return {classifier, box_reg};
}

torch::Tensor project_masks_on_boxes(const torch::Tensor& gt_masks, const torch::Tensor& boxes,
                                     const torch::Tensor& matched_idxs, int64_t size) {
  // Each GT mask is its own "image" of the batch; the matched index selects it.
  const auto rois = torch::cat({matched_idxs.to(boxes.dtype()).unsqueeze(1), boxes}, 1);  // [P, 5]
  ops::RoiAlignOptions options;
  options.pooled_height = options.pooled_width = size;
  options.sampling_ratio = 0;  // adaptive, torchvision's default -1
  return ops::roi_align(gt_masks.unsqueeze(1).to(rois.dtype()), rois, options).select(1, 0);
}

torch::Tensor maskrcnn_loss(const torch::Tensor& mask_logits,
                            const std::vector<torch::Tensor>& proposals,
                            const std::vector<torch::Tensor>& gt_masks,
                            const std::vector<torch::Tensor>& gt_labels,
                            const std::vector<torch::Tensor>& matched_idxs) {
  TORCH_CHECK(proposals.size() == gt_masks.size() && proposals.size() == gt_labels.size() &&
                  proposals.size() == matched_idxs.size(),
              "maskrcnn_loss: per-image lists differ in length");
  const int64_t size = mask_logits.size(-1);
  std::vector<torch::Tensor> labels, targets;
  for (size_t i = 0; i < proposals.size(); ++i) {
    labels.push_back(gt_labels[i].index({matched_idxs[i]}));
    targets.push_back(project_masks_on_boxes(gt_masks[i], proposals[i], matched_idxs[i], size));
  }
  const auto all_labels = torch::cat(labels);    // [P]
  const auto all_targets = torch::cat(targets);  // [P, M, M]
  // No foreground proposal: a zero that still connects the graph (mean of nothing is NaN).
  if (all_targets.numel() == 0) return mask_logits.sum() * 0;
  const auto rows = torch::arange(all_labels.size(0), all_labels.options());
  return torch::nn::functional::binary_cross_entropy_with_logits(
      mask_logits.index({rows, all_labels}), all_targets);
}

}  // namespace instseg
