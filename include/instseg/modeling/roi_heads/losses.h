#pragma once
// Training losses of the RoI heads, as torchvision's fastrcnn_loss / maskrcnn_loss. They take the
// sampled proposals explicitly, so a test can feed exactly the sample another implementation drew.
#include <torch/types.h>

#include <vector>

namespace instseg {

// The RoI heads' training sample of one image (torchvision's select_training_samples output).
struct RoiSample {
  torch::Tensor proposals;           // [S, 4] sampled proposals (GT boxes included), resized pixels
  torch::Tensor matched_idxs;        // [S] int64 index of the matched GT box (0 for background)
  torch::Tensor labels;              // [S] int64 class of the matched GT box, 0 = background
  torch::Tensor regression_targets;  // [S, 4] BoxCoder(10, 10, 5, 5) deltas to the matched GT box
};

struct FastRcnnLosses {
  torch::Tensor classifier;  // cross-entropy over all S sampled proposals
  torch::Tensor box_reg;     // smooth-L1 (beta 1/9) of the true class's deltas, summed over
                             // foreground proposals, divided by S
};

// class_logits [S, C], box_deltas [S, 4C], labels [S] int64, regression_targets [S, 4]
// (S = all images' samples concatenated).
FastRcnnLosses fastrcnn_loss(const torch::Tensor& class_logits, const torch::Tensor& box_deltas,
                             const torch::Tensor& labels, const torch::Tensor& regression_targets);

// Mask targets: each proposal's matched GT mask cut out along the proposal by RoIAlign
// (size x size, spatial scale 1, adaptive sampling, aligned=false), torchvision's
// project_masks_on_boxes. gt_masks [G, H, W] (any dtype), boxes [P, 4], matched_idxs [P] int64
// -> [P, size, size] float in [0, 1].
torch::Tensor project_masks_on_boxes(const torch::Tensor& gt_masks, const torch::Tensor& boxes,
                                     const torch::Tensor& matched_idxs, int64_t size);

// Per-class mask loss: binary cross-entropy with logits of each foreground proposal's GT-class
// mask against its projected GT mask, averaged over all pixels.
// mask_logits [P, C, M, M] for the foreground proposals of all images in order; per image:
// proposals [P_i, 4], gt_masks [G_i, H, W], gt_labels [G_i], matched_idxs [P_i].
torch::Tensor maskrcnn_loss(const torch::Tensor& mask_logits,
                            const std::vector<torch::Tensor>& proposals,
                            const std::vector<torch::Tensor>& gt_masks,
                            const std::vector<torch::Tensor>& gt_labels,
                            const std::vector<torch::Tensor>& matched_idxs);

}  // namespace instseg
