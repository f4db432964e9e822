#pragma once
#include <torch/types.h>

#include <array>
#include <cmath>

namespace instseg::ops {

// Encodes boxes as (dx, dy, dw, dh) deltas relative to reference boxes and back, as
// torchvision's det_utils.BoxCoder.
struct BoxCoder {
  std::array<double, 4> weights{1.0, 1.0, 1.0, 1.0};  // RPN: 1,1,1,1; box head: 10,10,5,5
  double bbox_xform_clip = std::log(1000.0 / 16);     // caps dw, dh so exp() cannot overflow

  // matched_boxes, proposals: [K, 4] -> deltas [K, 4]
  torch::Tensor encode(const torch::Tensor& matched_boxes, const torch::Tensor& proposals) const;
  // deltas: [K, 4 * C], boxes: [K, 4] -> decoded boxes [K, C, 4]
  torch::Tensor decode(const torch::Tensor& deltas, const torch::Tensor& boxes) const;
};

}  // namespace instseg::ops
