#include "instseg/modeling/roi_heads/poolers.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "instseg/ops/box_ops.h"
#include "instseg/ops/roi_align.h"

namespace instseg {

torch::Tensor map_box_levels(const torch::Tensor& boxes, int64_t k_min, int64_t k_max,
                             double canonical_scale, double canonical_level) {
  const auto sides = torch::sqrt(ops::box_area(boxes));  // [R]
  // Same float operations as torchvision, so boxes on a level boundary land on the same side.
  const auto levels = torch::floor(torch::log2(sides / canonical_scale) + canonical_level + 1e-6);
  return levels.clamp(static_cast<double>(k_min), static_cast<double>(k_max)).to(torch::kLong);
}

double infer_feature_scale(std::array<int64_t, 2> feature_size, std::array<int64_t, 2> image_size) {
  double scales[2];
  for (int d = 0; d < 2; ++d) {
    // torchvision rounds log2 of the float32 ratio, half to even.
    const float ratio = static_cast<float>(feature_size[d]) / static_cast<float>(image_size[d]);
    scales[d] = std::exp2(std::nearbyint(std::log2(ratio)));
  }
  TORCH_CHECK(scales[0] == scales[1], "MultiScaleRoiAlign: feature map ", feature_size[0], "x",
              feature_size[1], " has different height and width scales for image ", image_size[0],
              "x", image_size[1]);
  return scales[0];
}

std::vector<std::string> pooled_level_names(int64_t levels) {
  std::vector<std::string> names;
  for (int64_t l = 0; l < levels; ++l) names.push_back(std::to_string(l));
  return names;
}

MultiScaleRoiAlign::MultiScaleRoiAlign(std::vector<std::string> feature_names, int64_t output_size,
                                       int64_t sampling_ratio)
    : feature_names_(std::move(feature_names)),
      output_size_(output_size),
      sampling_ratio_(sampling_ratio) {
  TORCH_CHECK(!feature_names_.empty(), "MultiScaleRoiAlign: no feature names");
  TORCH_CHECK(output_size_ > 0, "MultiScaleRoiAlign: output_size must be positive, got ",
              output_size_);
}

torch::Tensor MultiScaleRoiAlign::forward(
    const FeatureMaps& features, const std::vector<torch::Tensor>& boxes,
    const std::vector<std::array<int64_t, 2>>& image_sizes) const {
  TORCH_CHECK(boxes.size() == image_sizes.size(), "MultiScaleRoiAlign: ", boxes.size(),
              " box lists for ", image_sizes.size(), " images");
  std::vector<torch::Tensor> levels;  // [N, C, H_l, W_l] in feature_names_ order
  for (const auto& name : feature_names_) {
    const auto it = std::find_if(features.begin(), features.end(),
                                 [&](const FeatureMap& f) { return f.name == name; });
    TORCH_CHECK(it != features.end(), "MultiScaleRoiAlign: no feature map named '", name, "'");
    levels.push_back(it->tensor);
  }
  // Scales are relative to the largest image of the batch, as torchvision.
  std::array<int64_t, 2> largest{0, 0};
  for (const auto& s : image_sizes) largest = {std::max(largest[0], s[0]), std::max(largest[1], s[1])};
  std::vector<double> scales;
  for (const auto& f : levels) scales.push_back(infer_feature_scale({f.size(2), f.size(3)}, largest));

  // rois: [R, 5] (image index, x1, y1, x2, y2)
  std::vector<torch::Tensor> with_index;
  for (size_t i = 0; i < boxes.size(); ++i) {
    with_index.push_back(torch::cat(
        {torch::full({boxes[i].size(0), 1}, static_cast<double>(i), boxes[i].options()), boxes[i]}, 1));
  }
  const auto rois = torch::cat(with_index);

  ops::RoiAlignOptions options;
  options.pooled_height = options.pooled_width = output_size_;
  options.sampling_ratio = sampling_ratio_;
  if (levels.size() == 1) {
    options.spatial_scale = scales[0];
    return ops::roi_align(levels[0], rois, options);
  }
  const auto k_min = static_cast<int64_t>(std::lround(-std::log2(scales.front())));
  const auto k_max = static_cast<int64_t>(std::lround(-std::log2(scales.back())));
  const auto roi_levels = map_box_levels(rois.slice(1, 1), k_min, k_max) - k_min;  // [R]

  const auto& first = levels[0];
  // In the boxes' precision, as roi_align pools bfloat16 features (ops/mixed_precision.h).
  // Channels-last features (predict's fused path) pool into a channels-last result.
  const auto format = first.is_contiguous(at::MemoryFormat::ChannelsLast) && !first.is_contiguous()
                          ? at::MemoryFormat::ChannelsLast
                          : at::MemoryFormat::Contiguous;
  auto result = at::empty({rois.size(0), first.size(1), output_size_, output_size_},
                          first.options().dtype(rois.dtype()).memory_format(format));  // [R, C, S, S]
  result.zero_();
  for (size_t l = 0; l < levels.size(); ++l) {
    const auto idx = torch::where(roi_levels == static_cast<int64_t>(l))[0];
    if (idx.numel() == 0) continue;
    options.spatial_scale = scales[l];
    result.index_put_({idx}, ops::roi_align(levels[l], rois.index_select(0, idx), options));
  }
  return result;
}

}  // namespace instseg
