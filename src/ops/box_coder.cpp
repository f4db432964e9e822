// Box <-> delta transform of torchvision's det_utils.BoxCoder, in the same operation order so
// float results match.
#include "instseg/ops/box_coder.h"

#include <torch/torch.h>

namespace instseg::ops {

torch::Tensor BoxCoder::encode(const torch::Tensor& matched_boxes,
                               const torch::Tensor& proposals) const {
  TORCH_CHECK(matched_boxes.dim() == 2 && matched_boxes.size(1) == 4,
              "BoxCoder::encode: matched_boxes must be [K, 4], got ", matched_boxes.sizes());
  TORCH_CHECK(proposals.sizes() == matched_boxes.sizes(), "BoxCoder::encode: proposals ",
              proposals.sizes(), " must match matched_boxes ", matched_boxes.sizes());
  // Weights as a tensor of the boxes' dtype, as torchvision, so float math stays float.
  const auto w =
      torch::tensor({weights[0], weights[1], weights[2], weights[3]}, matched_boxes.options());
  const auto col = [](const torch::Tensor& t, int64_t i) { return t.select(1, i).unsqueeze(1); };
  const auto ex_w = col(proposals, 2) - col(proposals, 0);  // [K, 1]
  const auto ex_h = col(proposals, 3) - col(proposals, 1);
  const auto ex_cx = col(proposals, 0) + 0.5 * ex_w;
  const auto ex_cy = col(proposals, 1) + 0.5 * ex_h;
  const auto gt_w = col(matched_boxes, 2) - col(matched_boxes, 0);
  const auto gt_h = col(matched_boxes, 3) - col(matched_boxes, 1);
  const auto gt_cx = col(matched_boxes, 0) + 0.5 * gt_w;
  const auto gt_cy = col(matched_boxes, 1) + 0.5 * gt_h;
  const auto dx = w[0] * (gt_cx - ex_cx) / ex_w;
  const auto dy = w[1] * (gt_cy - ex_cy) / ex_h;
  const auto dw = w[2] * torch::log(gt_w / ex_w);
  const auto dh = w[3] * torch::log(gt_h / ex_h);
  return torch::cat({dx, dy, dw, dh}, 1);  // [K, 4]
}

torch::Tensor BoxCoder::decode(const torch::Tensor& deltas, const torch::Tensor& boxes) const {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4,
              "BoxCoder::decode: boxes must be [K, 4], got ", boxes.sizes());
  TORCH_CHECK(deltas.dim() == 2 && deltas.size(0) == boxes.size(0) && deltas.size(1) % 4 == 0 &&
                  deltas.size(1) > 0,
              "BoxCoder::decode: deltas must be [K, 4 * C] with K = ", boxes.size(0), ", got ",
              deltas.sizes());
  using torch::indexing::None;
  using torch::indexing::Slice;
  const auto b = boxes.to(deltas.scalar_type());
  const auto widths = (b.select(1, 2) - b.select(1, 0)).unsqueeze(1);   // [K, 1]
  const auto heights = (b.select(1, 3) - b.select(1, 1)).unsqueeze(1);  // [K, 1]
  const auto ctr_x = b.select(1, 0).unsqueeze(1) + 0.5 * widths;
  const auto ctr_y = b.select(1, 1).unsqueeze(1) + 0.5 * heights;
  const auto every4 = [&](int64_t i) { return deltas.index({Slice(), Slice(i, None, 4)}); };
  const auto dx = every4(0) / weights[0];  // [K, C]
  const auto dy = every4(1) / weights[1];
  const auto dw = (every4(2) / weights[2]).clamp_max(bbox_xform_clip);
  const auto dh = (every4(3) / weights[3]).clamp_max(bbox_xform_clip);
  const auto pred_cx = dx * widths + ctr_x;
  const auto pred_cy = dy * heights + ctr_y;
  const auto half_w = 0.5 * (torch::exp(dw) * widths);
  const auto half_h = 0.5 * (torch::exp(dh) * heights);
  return torch::stack({pred_cx - half_w, pred_cy - half_h, pred_cx + half_w, pred_cy + half_h},
                      2);  // [K, C, 4]
}

}  // namespace instseg::ops
