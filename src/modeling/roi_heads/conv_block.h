#pragma once
// The conv3x3 (+ norm) + ReLU block of torchvision's Conv2dNormActivation, shared by the v2 box
// head and the mask head. Children "0" conv, then "1" norm and "2" ReLU, or "1" ReLU without
// norm, so state dict keys match torchvision's.
#include <torch/torch.h>

#include "instseg/modeling/layers/norm.h"

namespace instseg::detail {

inline torch::nn::Sequential conv3x3_norm_relu(int64_t in, int64_t out, int64_t dilation,
                                               NormKind norm) {
  namespace nn = torch::nn;
  // A norm layer makes the convolution's bias redundant.
  nn::Conv2d conv(nn::Conv2dOptions(in, out, 3)
                      .padding(dilation)
                      .dilation(dilation)
                      .bias(norm == NormKind::kNone));
  // torchvision's heads: He init for ReLU over fan_out, zero bias.
  nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
  if (conv->bias.defined()) nn::init::zeros_(conv->bias);
  nn::Sequential block(conv);
  if (norm != NormKind::kNone) block->push_back(make_norm(norm, out));
  block->push_back(nn::ReLU());
  return block;
}

}  // namespace instseg::detail
