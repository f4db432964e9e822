#pragma once
#include <torch/types.h>

namespace instseg::ops {

// Greedy non-maximum suppression, torchvision.ops.nms semantics (ties keep the lower index first,
// as a stable descending sort). boxes: [K, 4] (x1, y1, x2, y2); scores: [K].
// Returns kept indices [M] int64, by decreasing score.
torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold);

// NMS applied independently per value of `groups` ([K] int64), torchvision.ops.batched_nms.
torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                          const torch::Tensor& groups, double iou_threshold);

}  // namespace instseg::ops
