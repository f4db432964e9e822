#pragma once
#include <torch/types.h>

namespace instseg::ops {

// Greedy non-maximum suppression, torchvision.ops.nms semantics: a box is dropped when its IoU
// with a kept, higher-ranked box is > iou_threshold (equal is kept). Boxes are ranked by a
// stable descending sort of the scores, as torchvision: among equal scores the lower index wins.
// boxes: [K, 4] (x1, y1, x2, y2); scores: [K]. Returns kept indices [M] int64, by decreasing score.
torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold);

// NMS applied independently per value of `groups` ([K] integer), torchvision.ops.batched_nms
// (coordinate-offset trick up to 1000 boxes on the CPU, one NMS per group above, as torchvision).
// max_keep >= 0 returns torchvision's batched_nms(...)[:max_keep] and stops as soon as it has
// them, which is much faster when few of many boxes are wanted (the RPN's post-NMS top-n). Above
// the 1000-box switch, boxes with exactly equal scores may come in another order than
// torchvision's unstable sort gives them (and a tie at the cut may keep another of them).
torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                          const torch::Tensor& groups, double iou_threshold, int64_t max_keep = -1);

}  // namespace instseg::ops
