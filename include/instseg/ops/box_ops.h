#pragma once
#include <torch/types.h>

namespace instseg::ops {

// All boxes are (x1, y1, x2, y2) in pixels.
torch::Tensor box_area(const torch::Tensor& boxes);                               // [K]
torch::Tensor box_iou(const torch::Tensor& boxes1, const torch::Tensor& boxes2);  // [K1, K2]
torch::Tensor clip_boxes_to_image(const torch::Tensor& boxes, int64_t height, int64_t width);
// Indices of boxes whose width and height are both >= min_size.
torch::Tensor remove_small_boxes(const torch::Tensor& boxes, double min_size);

}  // namespace instseg::ops
