#include "instseg/modeling/transform.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "instseg/errors.h"
#include "modeling/option_error.h"

namespace instseg {
namespace {

namespace F = torch::nn::functional;

// batch: [B, C, H, W] -> [B, C, size[0], size[1]]; bilinear for images, nearest for masks.
torch::Tensor interpolate(const torch::Tensor& batch, std::array<int64_t, 2> size, bool bilinear) {
  auto options = F::InterpolateFuncOptions().size(std::vector<int64_t>{size[0], size[1]});
  if (bilinear) {
    options.mode(torch::kBilinear).align_corners(false);
  } else {
    options.mode(torch::kNearest);
  }
  return F::interpolate(batch, options);
}

}  // namespace

void TransformOptions::validate() const {
  if (min_size.empty()) throw ConfigError("transform.min_size must list at least one size");
  for (const int64_t s : min_size) {
    if (s <= 0) throw ConfigError("transform.min_size entries must be positive, got " + std::to_string(s));
  }
  if (max_size <= 0) throw ConfigError("transform.max_size must be positive, got " + std::to_string(max_size));
  for (const double s : image_std) {
    detail::require_option(s > 0, "transform.image_std entries", "positive", s);
  }
  if (size_divisible <= 0) {
    throw ConfigError("transform.size_divisible must be positive, got " + std::to_string(size_divisible));
  }
}

GeneralizedRcnnTransform::GeneralizedRcnnTransform(TransformOptions options)
    : options_(std::move(options)) {
  options_.validate();
}

std::array<int64_t, 2> GeneralizedRcnnTransform::resized_size(int64_t height, int64_t width,
                                                              int64_t min_size) const {
  // torchvision computes the scale in float32 and interpolate() then floors size * scale in
  // double (recompute_scale_factor=True); both roundings decide the output size, so keep them.
  const float shorter = static_cast<float>(std::min(height, width));
  const float longer = static_cast<float>(std::max(height, width));
  // Python's `800.0 / tensor` is tensor.reciprocal() * 800, so the float32 steps are 1 / side, then
  // the product: a plain 800.0f / 427.0f would give 1199 x 800 where torchvision gives 1199 x 799.
  const float scale = std::min((1.0f / shorter) * static_cast<float>(min_size),
                               (1.0f / longer) * static_cast<float>(options_.max_size));
  return {static_cast<int64_t>(std::floor(static_cast<double>(height) * scale)),
          static_cast<int64_t>(std::floor(static_cast<double>(width) * scale))};
}

torch::Tensor GeneralizedRcnnTransform::normalize(const torch::Tensor& image) const {
  TORCH_CHECK(image.dim() == 3 && image.size(0) == 3, "transform: expected a [3, H, W] image, got ",
              image.sizes());
  TORCH_CHECK(image.is_floating_point(), "transform: expected a float image in [0, 1], got ",
              image.scalar_type());
  const auto opts = image.options();
  const auto mean = torch::tensor(std::vector<double>(options_.image_mean.begin(), options_.image_mean.end()), opts);
  const auto std = torch::tensor(std::vector<double>(options_.image_std.begin(), options_.image_std.end()), opts);
  // In place on the difference: the same values, one full-size temporary fewer.
  return (image - mean.view({3, 1, 1})).div_(std.view({3, 1, 1}));
}

ImageList GeneralizedRcnnTransform::batch(const std::vector<torch::Tensor>& resized) const {
  TORCH_CHECK(!resized.empty(), "transform: no images");
  ImageList list;
  int64_t max_h = 0, max_w = 0;
  for (const auto& image : resized) {
    list.image_sizes.push_back({image.size(1), image.size(2)});
    max_h = std::max(max_h, image.size(1));
    max_w = std::max(max_w, image.size(2));
  }
  const int64_t d = options_.size_divisible;
  const int64_t pad_h = (max_h + d - 1) / d * d, pad_w = (max_w + d - 1) / d * d;
  list.tensors = torch::zeros({static_cast<int64_t>(resized.size()), 3, pad_h, pad_w},
                              resized.front().options());  // [N, 3, H_pad, W_pad]
  for (size_t i = 0; i < resized.size(); ++i) {
    using torch::indexing::Slice;
    list.tensors[i].index({Slice(), Slice(0, resized[i].size(1)), Slice(0, resized[i].size(2))})
        .copy_(resized[i]);
  }
  return list;
}

ImageList GeneralizedRcnnTransform::forward(const std::vector<torch::Tensor>& images) const {
  std::vector<torch::Tensor> resized;
  for (const auto& image : images) {
    const auto size = resized_size(image.size(1), image.size(2), options_.min_size.back());
    resized.push_back(interpolate(normalize(image).unsqueeze(0), size, /*bilinear=*/true)[0]);
  }
  return batch(resized);
}

std::pair<ImageList, std::vector<Targets>> GeneralizedRcnnTransform::forward_train(
    const std::vector<torch::Tensor>& images, const std::vector<Targets>& targets,
    std::optional<at::Generator> generator) const {
  TORCH_CHECK(images.size() == targets.size(), "transform: ", images.size(), " images but ",
              targets.size(), " targets");
  std::vector<torch::Tensor> resized;
  std::vector<Targets> resized_targets;
  const c10::optional<at::Generator> draw_from =
      generator ? c10::optional<at::Generator>(*generator) : c10::nullopt;
  for (size_t i = 0; i < images.size(); ++i) {
    // torchvision's torch_choice: a uniform draw from torch's generator, so seeding torch
    // reproduces the sequence of scales.
    const auto n = static_cast<double>(options_.min_size.size());
    const auto pick = static_cast<size_t>(torch::empty({1}).uniform_(0.0, n, draw_from).item<double>());
    const int64_t min_size = options_.min_size[std::min(pick, options_.min_size.size() - 1)];
    const std::array<int64_t, 2> from{images[i].size(1), images[i].size(2)};
    const auto to = resized_size(from[0], from[1], min_size);
    resized.push_back(interpolate(normalize(images[i]).unsqueeze(0), to, /*bilinear=*/true)[0]);

    Targets t = targets[i];
    t.boxes = resize_boxes(t.boxes, from, to);
    if (t.masks.defined() && t.masks.numel() > 0) {
      // [G, H, W] uint8 -> [G, 1, H, W] float -> nearest -> [G, H', W'] uint8
      t.masks = interpolate(t.masks.unsqueeze(1).to(torch::kFloat), to, /*bilinear=*/false)
                    .select(1, 0)
                    .to(torch::kUInt8);
    } else if (t.masks.defined()) {
      t.masks = torch::zeros({0, to[0], to[1]}, t.masks.options());
    }
    resized_targets.push_back(std::move(t));
  }
  return {batch(resized), std::move(resized_targets)};
}

torch::Tensor resize_boxes(const torch::Tensor& boxes, std::array<int64_t, 2> from,
                           std::array<int64_t, 2> to) {
  const float ratio_h = static_cast<float>(to[0]) / static_cast<float>(from[0]);
  const float ratio_w = static_cast<float>(to[1]) / static_cast<float>(from[1]);
  const auto xyxy = boxes.unbind(1);
  return torch::stack({xyxy[0] * ratio_w, xyxy[1] * ratio_h, xyxy[2] * ratio_w, xyxy[3] * ratio_h},
                      1);
}

}  // namespace instseg
