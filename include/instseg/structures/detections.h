#pragma once
#include <torch/types.h>

namespace instseg {

// Detections for one image, in the coordinates of the image given to the model.
struct Detections {
  torch::Tensor boxes;   // [K, 4] float (x1, y1, x2, y2)
  torch::Tensor scores;  // [K] float, descending
  torch::Tensor labels;  // [K] int64, model label indices (0 = background never appears)
  torch::Tensor masks;   // [K, 1, H, W] float probabilities pasted into the image
};

// Ground truth for one training image, in the coordinates of the image given to the model.
struct Targets {
  torch::Tensor boxes;   // [G, 4] float (x1, y1, x2, y2)
  torch::Tensor labels;  // [G] int64, 1..num_classes-1
  torch::Tensor masks;   // [G, H, W] uint8 binary masks
};

}  // namespace instseg
