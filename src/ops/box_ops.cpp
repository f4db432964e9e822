// Box utilities as torchvision.ops.boxes, written with tensor ops so they run on any device.
#include "instseg/ops/box_ops.h"

#include <torch/torch.h>

namespace instseg::ops {
namespace {

void check_boxes(const char* op, const torch::Tensor& boxes) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op, ": boxes must be [K, 4], got ",
              boxes.sizes());
}

// Half and 8/16-bit types overflow in products of coordinates (torchvision's _upcast).
torch::Tensor upcast(const torch::Tensor& t) {
  const auto type = t.scalar_type();
  if (t.is_floating_point()) {
    return type == torch::kFloat || type == torch::kDouble ? t : t.to(torch::kFloat);
  }
  return type == torch::kInt || type == torch::kLong ? t : t.to(torch::kInt);
}

}  // namespace

torch::Tensor box_area(const torch::Tensor& boxes) {
  check_boxes("box_area", boxes);
  const auto b = upcast(boxes);
  return (b.select(1, 2) - b.select(1, 0)) * (b.select(1, 3) - b.select(1, 1));
}

torch::Tensor box_iou(const torch::Tensor& boxes1, const torch::Tensor& boxes2) {
  check_boxes("box_iou", boxes1);
  check_boxes("box_iou", boxes2);
  const auto area1 = box_area(boxes1);  // [K1]
  const auto area2 = box_area(boxes2);  // [K2]
  using torch::indexing::None;
  using torch::indexing::Slice;
  const auto lt = torch::max(boxes1.index({Slice(), None, Slice(None, 2)}),
                             boxes2.index({Slice(), Slice(None, 2)}));  // [K1, K2, 2]
  const auto rb = torch::min(boxes1.index({Slice(), None, Slice(2, None)}),
                             boxes2.index({Slice(), Slice(2, None)}));  // [K1, K2, 2]
  const auto wh = upcast(rb - lt).clamp_min(0);                         // [K1, K2, 2]
  const auto inter = wh.select(2, 0) * wh.select(2, 1);                 // [K1, K2]
  const auto uni = area1.unsqueeze(1) + area2 - inter;
  return inter / uni;
}

torch::Tensor clip_boxes_to_image(const torch::Tensor& boxes, int64_t height, int64_t width) {
  TORCH_CHECK(boxes.dim() >= 1 && boxes.size(-1) == 4,
              "clip_boxes_to_image: boxes must be [..., 4], got ", boxes.sizes());
  TORCH_CHECK(height >= 0 && width >= 0, "clip_boxes_to_image: image size must be >= 0, got ",
              height, "x", width);
  using torch::indexing::Ellipsis;
  using torch::indexing::None;
  using torch::indexing::Slice;
  const auto xs = boxes.index({Ellipsis, Slice(0, None, 2)}).clamp(0, width);   // [..., 2]
  const auto ys = boxes.index({Ellipsis, Slice(1, None, 2)}).clamp(0, height);  // [..., 2]
  return torch::stack({xs, ys}, boxes.dim()).reshape(boxes.sizes());
}

torch::Tensor remove_small_boxes(const torch::Tensor& boxes, double min_size) {
  check_boxes("remove_small_boxes", boxes);
  const auto ws = boxes.select(1, 2) - boxes.select(1, 0);
  const auto hs = boxes.select(1, 3) - boxes.select(1, 1);
  return torch::where((ws >= min_size) & (hs >= min_size))[0];
}

}  // namespace instseg::ops
