#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <vector>

#include "instseg/modeling/layers/norm.h"
#include "instseg/structures/image_list.h"

namespace instseg {

// Feature pyramid network (torchvision.ops.FeaturePyramidNetwork with LastLevelMaxPool).
// Children inner_blocks."i" (1x1 lateral) and layer_blocks."i" (3x3 output) are each a sequence
// of "0" convolution (+ "1" norm unless norm is kNone), so state dict keys match torchvision's.
class FeaturePyramidNetworkImpl : public torch::nn::Module {
 public:
  FeaturePyramidNetworkImpl(const std::vector<int64_t>& in_channels, int64_t out_channels,
                            NormKind norm);

  // inputs: [N, C_i, H_i, W_i] by decreasing resolution -> maps "0".."L-1" [N, out, H_i, W_i]
  // plus "pool" = the last map subsampled by 2 ([N, out, ceil(H/2), ceil(W/2)]).
  FeatureMaps forward(const std::vector<torch::Tensor>& inputs);

  int64_t out_channels() const { return out_channels_; }

 private:
  int64_t out_channels_;
  torch::nn::ModuleList inner_blocks_{nullptr}, layer_blocks_{nullptr};
};
TORCH_MODULE(FeaturePyramidNetwork);

}  // namespace instseg
