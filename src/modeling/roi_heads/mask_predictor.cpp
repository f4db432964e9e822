#include "instseg/modeling/roi_heads/mask_predictor.h"

#include <torch/torch.h>

#include "instseg/ops/upsample_conv.h"

namespace instseg {

namespace nn = torch::nn;

MaskRcnnPredictorImpl::MaskRcnnPredictorImpl(int64_t in_channels, int64_t dim_reduced,
                                             int64_t num_classes) {
  conv5_mask = register_module(
      "conv5_mask", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in_channels, dim_reduced, 2).stride(2)));
  mask_fcn_logits = register_module("mask_fcn_logits",
                                    nn::Conv2d(nn::Conv2dOptions(dim_reduced, num_classes, 1)));
  // torchvision: He init for ReLU over fan_out on the weights, biases left at their defaults.
  nn::init::kaiming_normal_(conv5_mask->weight, 0.0, torch::kFanOut, torch::kReLU);
  nn::init::kaiming_normal_(mask_fcn_logits->weight, 0.0, torch::kFanOut, torch::kReLU);
}

torch::Tensor MaskRcnnPredictorImpl::forward(const torch::Tensor& x) {
  // conv5_mask's parameters, computed as a 1x1 convolution and a pixel shuffle when training
  // (see ops/upsample_conv.h).
  // Logits in the parameters' precision, for the loss and the pasted masks (ops/mixed_precision.h).
  return mask_fcn_logits(torch::relu(ops::upsample_conv2x2(x, conv5_mask->weight, conv5_mask->bias)))
      .to(mask_fcn_logits->weight.scalar_type());
}

}  // namespace instseg
