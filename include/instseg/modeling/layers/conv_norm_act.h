#pragma once
// The convolution (+ norm) (+ ReLU) block of torchvision's Conv2dNormActivation, the one builder
// used by the backbone (ResNet shortcut projections), the FPN, the RPN head and the RoI heads.
// Children "0" convolution, then "1" norm unless kNone, then the ReLU, so state dict keys read
// <block>.0.weight, <block>.1.running_mean as torchvision's.
#include <torch/arg.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "instseg/modeling/layers/norm.h"
#include "instseg/ops/conv2d.h"

namespace instseg {

// How the convolution's weights start, following the stage's torchvision counterpart (checkpoints
// overwrite them). Applied as the block is built, before its norm layer.
enum class ConvInit {
  kTorchDefault,     // nn.Conv2d's own; for stages that re-initialise their convolutions together
  kKaimingUniform,   // kaiming_uniform (a = 1), zero bias: torchvision's FeaturePyramidNetwork
  kKaimingNormalFanOut,  // kaiming_normal (fan_out, ReLU), zero bias: torchvision's RoI heads
};

struct ConvNormActOptions {
  ConvNormActOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, out_channels);
  TORCH_ARG(int64_t, kernel_size);  // square, padded by (kernel_size - 1) / 2 * dilation
  TORCH_ARG(int64_t, stride) = 1;
  TORCH_ARG(int64_t, dilation) = 1;
  // A norm layer makes the convolution's bias redundant: the convolution has one only with kNone.
  TORCH_ARG(NormKind, norm) = NormKind::kNone;
  TORCH_ARG(bool, relu) = true;
  TORCH_ARG(ConvInit, init) = ConvInit::kTorchDefault;
};

class ConvNormActImpl : public torch::nn::SequentialImpl {
 public:
  explicit ConvNormActImpl(const ConvNormActOptions& options);
  // x: [N, in, H, W] -> [N, out, H', W'] (H' = H / stride for odd kernels)
  // A concrete signature, so that a block nests in another Sequential (the RPN head's conv).
  torch::Tensor forward(torch::Tensor x);

  // The convolution's kernels (ops::conv2d): kLibTorch by default; MaskRcnnImpl's channels-last
  // training steps set kWinograd.
  void set_conv_kernel(ops::ConvKernel kernel) { conv_kernel_ = kernel; }
  ops::ConvKernel conv_kernel() const { return conv_kernel_; }

 private:
  ops::ConvKernel conv_kernel_ = ops::ConvKernel::kLibTorch;
};
TORCH_MODULE(ConvNormAct);

}  // namespace instseg
