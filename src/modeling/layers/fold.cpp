#include "modeling/layers/fold.h"

#include <torch/torch.h>

#include "instseg/modeling/layers/norm.h"

namespace instseg::detail {
namespace {

// (scale, shift) of an eval-mode norm layer, in double so folding adds no rounding of its own.
std::pair<torch::Tensor, torch::Tensor> scale_shift(const torch::nn::Module& norm) {
  if (const auto* frozen = norm.as<FrozenBatchNorm2dImpl>()) {
    const auto scale = frozen->weight.to(torch::kDouble) * (frozen->running_var.to(torch::kDouble) + frozen->eps()).rsqrt();
    return {scale, frozen->bias.to(torch::kDouble) - frozen->running_mean.to(torch::kDouble) * scale};
  }
  const auto* bn = norm.as<torch::nn::BatchNorm2dImpl>();
  TORCH_CHECK(bn != nullptr, "fuse_conv: ", norm.name(), " cannot be folded into a convolution");
  const auto channels = bn->running_var.size(0);
  const auto gamma = bn->weight.defined() ? bn->weight.to(torch::kDouble) : torch::ones({channels}, torch::kDouble);
  const auto beta = bn->bias.defined() ? bn->bias.to(torch::kDouble) : torch::zeros({channels}, torch::kDouble);
  const auto scale = gamma * (bn->running_var.to(torch::kDouble) + bn->options.eps()).rsqrt();
  return {scale, beta - bn->running_mean.to(torch::kDouble) * scale};
}

}  // namespace

bool foldable(const torch::nn::Module* norm) {
  return norm == nullptr || norm->as<FrozenBatchNorm2dImpl>() != nullptr ||
         norm->as<torch::nn::BatchNorm2dImpl>() != nullptr;
}

ops::FusedConv2d fuse_conv(const torch::nn::Conv2dImpl& conv, const torch::nn::Module* norm, bool relu,
                           ops::InferencePrecision precision, bool float_output) {
  torch::NoGradGuard no_grad;
  const auto& o = conv.options;
  TORCH_CHECK((*o.stride())[0] == (*o.stride())[1] && (*o.dilation())[0] == (*o.dilation())[1] &&
                  (*o.kernel_size())[0] == (*o.kernel_size())[1] && o.groups() == 1,
              "fuse_conv: square, ungrouped convolutions only");
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&o.padding());
  TORCH_CHECK(padding != nullptr && (**padding)[0] == (**padding)[1], "fuse_conv: symmetric numeric padding only");
  auto weight = conv.weight.to(torch::kDouble);
  auto bias = conv.bias.defined() ? conv.bias.to(torch::kDouble) : torch::zeros({weight.size(0)}, torch::kDouble);
  if (norm != nullptr) {
    const auto [scale, shift] = scale_shift(*norm);
    weight = weight * scale.view({-1, 1, 1, 1});
    bias = bias * scale + shift;
  }
  ops::FusedConvOptions options;
  options.stride = (*o.stride())[0];
  options.padding = (**padding)[0];
  options.dilation = (*o.dilation())[0];
  options.relu = relu;
  options.precision = precision;
  options.float_output = float_output;
  return ops::FusedConv2d(weight.to(torch::kFloat), bias.to(torch::kFloat), options);
}

ops::FusedConv2d fuse_block(const ConvNormActImpl& block, ops::InferencePrecision precision, bool float_output) {
  const torch::nn::Conv2dImpl* conv = nullptr;
  const torch::nn::Module* norm = nullptr;
  bool relu = false;
  for (const auto& child : block.children()) {
    if (const auto* c = child->as<torch::nn::Conv2dImpl>()) {
      conv = c;
    } else if (child->as<torch::nn::ReLUImpl>() != nullptr) {
      relu = true;
    } else {
      norm = child.get();
    }
  }
  TORCH_CHECK(conv != nullptr, "fuse_block: no convolution in the block");
  if (!foldable(norm)) return {};
  return fuse_conv(*conv, norm, relu, precision, float_output);
}

}  // namespace instseg::detail
