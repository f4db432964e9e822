#pragma once
// CPU kernels behind the ops front files (src/ops/*.cpp). The front files check arguments and
// pick the kernel by device; kernels assume checked, same-dtype CPU tensors.
#include <torch/types.h>

#include "instseg/ops/roi_align.h"

namespace instseg::ops::cpu {

// input: [N, C, H, W], rois: [K, 5] -> [K, C, PH, PW]
torch::Tensor roi_align_forward(const torch::Tensor& input, const torch::Tensor& rois,
                                const RoiAlignOptions& options);

// grad_output: [K, C, PH, PW], rois: [K, 5] -> grad_input [N, C, H, W] (input_sizes)
torch::Tensor roi_align_backward(const torch::Tensor& grad_output, const torch::Tensor& rois,
                                 const RoiAlignOptions& options, at::IntArrayRef input_sizes);

// boxes: [K, 4], scores: [K], groups: [K] integer or undefined (one group) -> kept indices [M]
// int64, by decreasing score (stable), at most max_keep of them (all when negative). Boxes of
// different groups never suppress each other.
torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& groups,
                  double iou_threshold, int64_t max_keep);

}  // namespace instseg::ops::cpu
