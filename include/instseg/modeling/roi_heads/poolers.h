#pragma once
#include <torch/types.h>

#include <array>
#include <string>
#include <vector>

#include "instseg/structures/image_list.h"

namespace instseg {

// FPN level of each box, torchvision's LevelMapper (Feature Pyramid Networks paper, eq. 1):
// k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6), clamped to
// [k_min, k_max]. boxes: [R, 4] -> [R] int64 levels in [k_min, k_max].
torch::Tensor map_box_levels(const torch::Tensor& boxes, int64_t k_min, int64_t k_max,
                             double canonical_scale = 224, double canonical_level = 4);

// Scale of a feature map relative to the (largest) image: 2^round(log2(feature / image)), checked
// to agree between height and width. A 200x336 map of an 800x1344 image gives 0.25.
double infer_feature_scale(std::array<int64_t, 2> feature_size, std::array<int64_t, 2> image_size);

// The names of the FPN maps RoIs are pooled from, "0".."<levels - 1>" (every level but "pool").
std::vector<std::string> pooled_level_names(int64_t levels);

// torchvision's MultiScaleRoIAlign: each box is pooled from the one FPN level that suits its
// size. Holds no parameters.
class MultiScaleRoiAlign {
 public:
  MultiScaleRoiAlign(std::vector<std::string> feature_names, int64_t output_size,
                     int64_t sampling_ratio = 2);

  // features: FPN maps (only feature_names are used), each [N, C, H_l, W_l]; boxes: [R_i, 4] per
  // image in resized-image pixels; image_sizes: (height, width) of each resized image.
  // Returns [sum R_i, C, output_size, output_size], boxes in image order.
  torch::Tensor forward(const FeatureMaps& features, const std::vector<torch::Tensor>& boxes,
                        const std::vector<std::array<int64_t, 2>>& image_sizes) const;

  int64_t output_size() const { return output_size_; }

 private:
  std::vector<std::string> feature_names_;
  int64_t output_size_;
  int64_t sampling_ratio_;
};

}  // namespace instseg
