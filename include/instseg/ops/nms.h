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
torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                          const torch::Tensor& groups, double iou_threshold);

}  // namespace instseg::ops
