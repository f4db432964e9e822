#pragma once
// Where RoIAlign samples one RoI (torchvision's roi_align, aligned=false as Mask R-CNN's box and
// mask poolers), for explain's picture of the sampling points; and that picture.
#include <torch/types.h>

#include <opencv2/core/mat.hpp>

#include <array>
#include <cstdint>
#include <vector>

namespace instseg::explain::infer {

// The RoI on its feature map. With aligned=false the box is x * scale (no half-pixel shift) and
// a box under one feature pixel counts as one pixel; bins split it evenly, and each bin averages
// grid_h x grid_w bilinear samples at the centres of its sub-cells. Feature pixel i holds the value
// at coordinate i.
struct RoiAlignGrid {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // the RoI in feature pixels (box * scale)
  double roi_w = 0, roi_h = 0;            // max(x2 - x1, 1), max(y2 - y1, 1)
  double bin_w = 0, bin_h = 0;            // roi_w / pooled_w, roi_h / pooled_h
  int64_t pooled_h = 0, pooled_w = 0;
  int64_t grid_h = 0, grid_w = 0;  // samples per bin side (sampling_ratio)
  // The (x, y) sampling points of bin (ph, pw), row by row.
  std::vector<std::array<double, 2>> points(int64_t ph, int64_t pw) const;
};
// roi: [4] (x1, y1, x2, y2) in resized-image pixels; scale: feature pixels per image pixel.
RoiAlignGrid roi_align_grid(const torch::Tensor& roi, double scale, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio);

// The feature map's channel energy around the RoI, one cell per feature pixel, zoomed, with the
// RoI (white), its bins (yellow) and sampling points (red). feature: [C, H, W].
cv::Mat draw_sampling_grid(const torch::Tensor& feature, const RoiAlignGrid& grid);

}  // namespace instseg::explain::infer
