#pragma once
#include <torch/types.h>

#include <array>
#include <vector>

namespace instseg {

// A batch of images resized and padded to one tensor, as the model sees them.
struct ImageList {
  torch::Tensor tensors;  // [N, 3, H_pad, W_pad], normalised, zero padding bottom/right
  // (height, width) of each image after resizing, before padding: the valid region of tensors.
  std::vector<std::array<int64_t, 2>> image_sizes;
};

// FPN outputs in order of decreasing resolution: names "0", "1", "2", "3", "pool".
struct FeatureMap {
  std::string name;
  torch::Tensor tensor;  // [N, C, H_l, W_l]
};
using FeatureMaps = std::vector<FeatureMap>;

}  // namespace instseg
