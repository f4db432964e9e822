#pragma once
// The ResNet-FPN backbone's fused inference form (ResnetFpn::prepare_inference): every
// convolution with its frozen / batch norm folded in, ReLUs fused, each residual block's closing
// add done by its last convolution, each FPN lateral adding the upsampled coarser map the same
// way; channels-last activations throughout.
#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "instseg/ops/fused_conv.h"
#include "instseg/structures/image_list.h"

namespace instseg {

struct StageProfile;
class ResnetFpnImpl;

class FusedResnetFpn {
 public:
  // Null when a norm layer cannot be folded (group norm): the backbone then keeps its module code.
  static std::shared_ptr<const FusedResnetFpn> build(ResnetFpnImpl& backbone, ops::InferencePrecision precision);

  // images [N, 3, H, W] -> the module's FeatureMaps (fp32, channels-last).
  FeatureMaps forward(const at::Tensor& images, StageProfile* profile) const;

 private:
  struct Block {
    std::vector<ops::FusedConv2d> convs;  // the last one closes the block with the add and ReLU
    ops::FusedConv2d downsample;          // undefined: the block's input is the shortcut
  };
  ops::FusedConv2d stem_;
  std::vector<std::vector<Block>> layers_;  // layer1..layer<stages>
  std::vector<int> returned_layers_;        // the stages (1-based) feeding the FPN
  std::vector<ops::FusedConv2d> inner_, outer_;  // FPN laterals and 3x3 outputs
};

}  // namespace instseg
