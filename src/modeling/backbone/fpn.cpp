#include "instseg/modeling/backbone/fpn.h"

#include <torch/torch.h>

#include "instseg/modeling/layers/conv_norm_act.h"

namespace instseg {
namespace {

namespace nn = torch::nn;

// torchvision's FPN blocks: no activation, kaiming_uniform (a = 1) weights.
ConvNormAct conv_norm(int64_t in, int64_t out, int64_t kernel, NormKind norm) {
  return ConvNormAct(ConvNormActOptions(in, out, kernel)
                         .norm(norm)
                         .relu(false)
                         .init(ConvInit::kKaimingUniform));
}

ConvNormActImpl& block(nn::ModuleList& list, int64_t i) { return *list[i]->as<ConvNormAct>(); }

}  // namespace

FeaturePyramidNetworkImpl::FeaturePyramidNetworkImpl(const std::vector<int64_t>& in_channels,
                                                     int64_t out_channels, NormKind norm)
    : out_channels_(out_channels) {
  TORCH_CHECK(!in_channels.empty(), "FeaturePyramidNetwork: in_channels is empty");
  inner_blocks_ = register_module("inner_blocks", nn::ModuleList());
  layer_blocks_ = register_module("layer_blocks", nn::ModuleList());
  for (const int64_t c : in_channels) {
    inner_blocks_->push_back(conv_norm(c, out_channels, 1, norm));
    layer_blocks_->push_back(conv_norm(out_channels, out_channels, 3, norm));
  }
}

FeatureMaps FeaturePyramidNetworkImpl::forward(const std::vector<torch::Tensor>& inputs) {
  const auto levels = static_cast<int64_t>(inputs.size());
  TORCH_CHECK(levels == static_cast<int64_t>(inner_blocks_->size()), "FeaturePyramidNetwork: got ",
              levels, " inputs, built for ", inner_blocks_->size());
  std::vector<torch::Tensor> outputs(levels);
  // Top-down: the coarser merged map, upsampled (nearest) to the lateral's size, plus the lateral.
  auto merged = block(inner_blocks_, levels - 1).forward(inputs[levels - 1]);
  outputs[levels - 1] = block(layer_blocks_, levels - 1).forward(merged);
  for (int64_t i = levels - 2; i >= 0; --i) {
    auto lateral = block(inner_blocks_, i).forward(inputs[i]);  // [N, out, H_i, W_i]
    auto top_down = nn::functional::interpolate(
        merged, nn::functional::InterpolateFuncOptions()
                    .size(std::vector<int64_t>{lateral.size(2), lateral.size(3)})
                    .mode(torch::kNearest));
    merged = lateral + top_down;
    outputs[i] = block(layer_blocks_, i).forward(merged);
  }
  FeatureMaps maps;
  for (int64_t i = 0; i < levels; ++i) maps.push_back({std::to_string(i), outputs[i]});
  // LastLevelMaxPool: a kernel-1, stride-2 max pool is plain subsampling, the coarsest level.
  maps.push_back({"pool", torch::max_pool2d(outputs.back(), /*kernel_size=*/1, /*stride=*/2)});
  return maps;
}

}  // namespace instseg
