#include "instseg/modeling/roi_heads/mask_head.h"

#include <torch/torch.h>

namespace instseg {

MaskRcnnHeadsImpl::MaskRcnnHeadsImpl(int64_t in_channels, const std::vector<int64_t>& layers,
                                     int64_t dilation, NormKind norm) {
  TORCH_CHECK(!layers.empty(), "MaskRcnnHeads: no layers");
  int64_t channels = in_channels;
  // The blocks are this module's own children "0", "1", ... as in torchvision's nn.Sequential.
  for (const int64_t c : layers) {
    // torchvision's heads: He init for ReLU over fan_out, zero bias.
    const auto options = ConvNormActOptions(channels, c, 3)
                             .dilation(dilation)
                             .norm(norm)
                             .init(ConvInit::kKaimingNormalFanOut);
    blocks_.push_back(register_module(std::to_string(blocks_.size()), ConvNormAct(options)));
    channels = c;
  }
}

torch::Tensor MaskRcnnHeadsImpl::forward(const torch::Tensor& x) {
  auto y = x;
  for (auto& block : blocks_) y = block->forward(y);
  return y;
}

}  // namespace instseg
