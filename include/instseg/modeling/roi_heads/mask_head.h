#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <vector>

#include "instseg/modeling/layers/conv_norm_act.h"
#include "instseg/modeling/layers/norm.h"

namespace instseg {

// torchvision's MaskRCNNHeads: conv3x3 (+ norm) + ReLU blocks, children "0".."n-1" each with "0"
// conv (bias only without norm) and "1" norm. v1: 4 x 256 without norm; v2: with batch norm.
class MaskRcnnHeadsImpl : public torch::nn::Module {
 public:
  MaskRcnnHeadsImpl(int64_t in_channels, const std::vector<int64_t>& layers, int64_t dilation,
                    NormKind norm);
  // x: [R, in_channels, S, S] -> [R, layers.back(), S, S]
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<ConvNormAct> blocks_;
};
TORCH_MODULE(MaskRcnnHeads);

}  // namespace instseg
