#include "instseg/modeling/anchor_generator.h"

#include <torch/torch.h>

#include <sstream>

#include "instseg/errors.h"
#include "modeling/option_error.h"

namespace instseg {

void AnchorGeneratorOptions::validate() const {
  if (sizes.empty() || sizes.size() != aspect_ratios.size()) {
    throw ConfigError("anchors.sizes and anchors.aspect_ratios must list the same (non-zero) number "
                      "of levels, got " + std::to_string(sizes.size()) + " and " +
                      std::to_string(aspect_ratios.size()));
  }
  for (size_t l = 0; l < sizes.size(); ++l) {
    if (sizes[l].empty() || aspect_ratios[l].empty()) {
      throw ConfigError("anchors.sizes[" + std::to_string(l) + "] and anchors.aspect_ratios[" +
                        std::to_string(l) + "] must not be empty");
    }
    for (const double s : sizes[l]) {
      detail::require_option(s > 0, "anchors.sizes[" + std::to_string(l) + "]", "positive", s);
    }
    for (const double r : aspect_ratios[l]) {
      detail::require_option(r > 0, "anchors.aspect_ratios[" + std::to_string(l) + "]", "positive", r);
    }
  }
}

AnchorGenerator::AnchorGenerator(AnchorGeneratorOptions options) : options_(std::move(options)) {
  options_.validate();
}

std::vector<int64_t> AnchorGenerator::num_anchors_per_location() const {
  std::vector<int64_t> counts;
  for (size_t l = 0; l < options_.sizes.size(); ++l) {
    counts.push_back(static_cast<int64_t>(options_.sizes[l].size() * options_.aspect_ratios[l].size()));
  }
  return counts;
}

torch::Tensor AnchorGenerator::cell_anchors(size_t level, torch::Dtype dtype,
                                            torch::Device device) const {
  // Built in float32 and rounded, then converted, as torchvision (its cell anchors are made once
  // in float32), so every dtype sees the same whole-pixel offsets.
  const auto scales = torch::tensor(options_.sizes.at(level), torch::kFloat);          // [S]
  const auto ratios = torch::tensor(options_.aspect_ratios.at(level), torch::kFloat);  // [R]
  const auto h_ratios = torch::sqrt(ratios);
  const auto w_ratios = 1 / h_ratios;
  const auto ws = (w_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);  // [R * S]
  const auto hs = (h_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);
  const auto base = torch::stack({-ws, -hs, ws, hs}, 1) / 2;  // [R * S, 4]
  return base.round().to(device, dtype);
}

std::vector<torch::Tensor> AnchorGenerator::forward(const ImageList& images,
                                                    const FeatureMaps& features) {
  TORCH_CHECK(features.size() == options_.sizes.size(), "AnchorGenerator: ", features.size(),
              " feature maps but anchors configured for ", options_.sizes.size(), " levels");
  const int64_t image_h = images.tensors.size(-2), image_w = images.tensors.size(-1);
  const auto dtype = features.front().tensor.scalar_type();
  const auto device = features.front().tensor.device();

  std::ostringstream key;
  key << image_h << 'x' << image_w << ' ' << dtype << ' ' << device;
  for (const auto& f : features) key << ' ' << f.tensor.size(-2) << 'x' << f.tensor.size(-1);

  torch::Tensor all;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = cache_.find(key.str());
    if (it != cache_.end()) {
      all = it->second;
    } else {
      std::vector<torch::Tensor> per_level;
      for (size_t l = 0; l < features.size(); ++l) {
        const int64_t grid_h = features[l].tensor.size(-2), grid_w = features[l].tensor.size(-1);
        // Integer division, as torchvision: a padded size that is not a multiple of the grid
        // (e.g. the "pool" level of an odd grid) gets the floor stride.
        const int64_t stride_h = image_h / grid_h, stride_w = image_w / grid_w;
        const auto int_opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
        const auto shifts_x = torch::arange(grid_w, int_opts) * stride_w;  // [W]
        const auto shifts_y = torch::arange(grid_h, int_opts) * stride_h;  // [H]
        const auto grid = torch::meshgrid({shifts_y, shifts_x}, "ij");
        const auto sx = grid[1].reshape(-1), sy = grid[0].reshape(-1);      // [H * W]
        const auto shifts = torch::stack({sx, sy, sx, sy}, 1);                // [H * W, 4]
        const auto base = cell_anchors(l, dtype, device);                     // [A, 4]
        per_level.push_back((shifts.view({-1, 1, 4}) + base.view({1, -1, 4})).reshape({-1, 4}));
      }
      all = torch::cat(per_level);  // [sum_l H_l * W_l * A, 4]
      cache_.emplace(key.str(), all);
    }
  }
  // Every image of the batch shares the padded size, hence the same anchors.
  return std::vector<torch::Tensor>(images.image_sizes.size(), all);
}

}  // namespace instseg
