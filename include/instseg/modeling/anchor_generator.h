#pragma once
#include <torch/types.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "instseg/structures/image_list.h"

namespace instseg {

struct AnchorGeneratorOptions {
  // One entry per feature level: anchor sides in input pixels (torchvision: one per FPN level).
  std::vector<std::vector<double>> sizes{{32}, {64}, {128}, {256}, {512}};
  // Height / width ratios, one list per level.
  std::vector<std::vector<double>> aspect_ratios{
      {0.5, 1.0, 2.0}, {0.5, 1.0, 2.0}, {0.5, 1.0, 2.0}, {0.5, 1.0, 2.0}, {0.5, 1.0, 2.0}};
  void validate() const;  // throws ConfigError naming anchors.sizes / anchors.aspect_ratios
};

// torchvision's AnchorGenerator: per level, cell anchors centred on 0 (rounded to whole pixels)
// shifted to every feature-map cell, with the stride = padded image size / feature size.
class AnchorGenerator {
 public:
  explicit AnchorGenerator(AnchorGeneratorOptions options = {});

  // Anchors per location on each level (sizes x ratios): 3 for the defaults.
  std::vector<int64_t> num_anchors_per_location() const;

  // Cell anchors of one level, [A, 4] (x1, y1, x2, y2) centred on 0: ratios outer, sizes inner.
  torch::Tensor cell_anchors(size_t level, torch::Dtype dtype, torch::Device device) const;

  // One [sum_l H_l * W_l * A_l, 4] tensor per image (all images of a batch share the padded size),
  // ordered level, row, column, anchor, as the RPN head's flattened outputs.
  std::vector<torch::Tensor> forward(const ImageList& images, const FeatureMaps& features);

 private:
  AnchorGeneratorOptions options_;
  // The grid anchors of a batch shape (padded size, feature sizes, dtype, device): one entry per
  // distinct input shape, so a fixed-size video or dataset computes them once.
  std::mutex mutex_;
  std::map<std::string, torch::Tensor> cache_;
};

}  // namespace instseg
