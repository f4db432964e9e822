#pragma once
#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "instseg/structures/detections.h"
#include "instseg/structures/image_list.h"

namespace instseg {

struct TransformOptions {
  // Shorter side after resizing. Inference uses the last entry; training draws one per image
  // (multi-scale training).
  std::vector<int64_t> min_size{800};
  int64_t max_size = 1333;  // cap on the longer side, which wins when the two conflict
  std::array<double, 3> image_mean{0.485, 0.456, 0.406};  // ImageNet RGB statistics
  std::array<double, 3> image_std{0.229, 0.224, 0.225};
  int64_t size_divisible = 32;  // batch padded to a multiple of the coarsest backbone stride
  void validate() const;        // throws ConfigError naming the transform.* field
};

// Images (and training targets) in, normalised padded batch out: torchvision's
// GeneralizedRCNNTransform. Holds no parameters.
class GeneralizedRcnnTransform {
 public:
  explicit GeneralizedRcnnTransform(TransformOptions options = {});

  // images: each [3, H_i, W_i] float RGB in [0, 1] -> normalised batch resized with the last
  // min_size, zero-padded bottom/right to multiples of size_divisible.
  ImageList forward(const std::vector<torch::Tensor>& images) const;

  // Training: each image resized with a min_size drawn uniformly from `generator` (torch's
  // default one when absent, as torchvision); boxes scaled, masks resized with nearest
  // interpolation. Returns the batch and targets in its pixels.
  std::pair<ImageList, std::vector<Targets>> forward_train(
      const std::vector<torch::Tensor>& images, const std::vector<Targets>& targets,
      std::optional<at::Generator> generator = std::nullopt) const;

  // The (height, width) an image of the given size is resized to for this min_size.
  std::array<int64_t, 2> resized_size(int64_t height, int64_t width, int64_t min_size) const;

  const TransformOptions& options() const { return options_; }

 private:
  torch::Tensor normalize(const torch::Tensor& image) const;
  ImageList batch(const std::vector<torch::Tensor>& resized) const;

  TransformOptions options_;
};

// Scales boxes [K, 4] (x1, y1, x2, y2) from an image of size `from` (height, width) to `to`, as
// torchvision (float32 ratios per axis). Used both for targets and to map predictions back.
torch::Tensor resize_boxes(const torch::Tensor& boxes, std::array<int64_t, 2> from,
                           std::array<int64_t, 2> to);

}  // namespace instseg
