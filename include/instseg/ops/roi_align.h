#pragma once
#include <torch/types.h>

namespace instseg::ops {

struct RoiAlignOptions {
  int64_t pooled_height = 7;
  int64_t pooled_width = 7;
  double spatial_scale = 1.0;  // feature-map pixels per input pixel (1/4 .. 1/32 on an FPN)
  int64_t sampling_ratio = 2;  // sample points per bin side; 0 = adaptive ceil(roi_size / pooled)
  // true shifts boxes by -0.5 px (Detectron2); false is torchvision's default
  bool aligned = false;
};

// Bilinear RoI pooling, torchvision.ops.roi_align semantics, differentiable w.r.t. input.
// input: [N, C, H, W]; rois: [K, 5] (batch_index, x1, y1, x2, y2) in input-image pixels.
// Returns [K, C, pooled_height, pooled_width]. CPU kernel parallel over RoIs.
torch::Tensor roi_align(const torch::Tensor& input, const torch::Tensor& rois,
                        const RoiAlignOptions& options);

}  // namespace instseg::ops
