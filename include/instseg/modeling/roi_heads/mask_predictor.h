#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace instseg {

// torchvision's MaskRCNNPredictor: a 2x2 stride-2 transposed conv + ReLU doubles the resolution
// (14 -> 28), then a 1x1 conv gives one mask logit map per class. Children conv5_mask,
// mask_fcn_logits.
class MaskRcnnPredictorImpl : public torch::nn::Module {
 public:
  MaskRcnnPredictorImpl(int64_t in_channels, int64_t dim_reduced, int64_t num_classes);
  // x: [R, in_channels, S, S] -> logits [R, num_classes, 2S, 2S]
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::ConvTranspose2d conv5_mask{nullptr};
  torch::nn::Conv2d mask_fcn_logits{nullptr};
};
TORCH_MODULE(MaskRcnnPredictor);

}  // namespace instseg
