#include "instseg/modeling/layers/conv_norm_act.h"

#include <torch/torch.h>

namespace instseg {

namespace nn = torch::nn;

ConvNormActImpl::ConvNormActImpl(const ConvNormActOptions& o) {
  const bool has_norm = o.norm() != NormKind::kNone;
  nn::Conv2d conv(nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                      .stride(o.stride())
                      .padding((o.kernel_size() - 1) / 2 * o.dilation())
                      .dilation(o.dilation())
                      .bias(!has_norm));
  switch (o.init()) {
    case ConvInit::kTorchDefault: break;
    case ConvInit::kKaimingUniform: nn::init::kaiming_uniform_(conv->weight, /*a=*/1); break;
    case ConvInit::kKaimingNormalFanOut:
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      break;
  }
  if (o.init() != ConvInit::kTorchDefault && conv->bias.defined()) nn::init::zeros_(conv->bias);
  push_back(conv);
  if (has_norm) push_back(make_norm(o.norm(), o.out_channels()));
  if (o.relu()) push_back(nn::ReLU());
}

torch::Tensor ConvNormActImpl::forward(torch::Tensor x) {
  if (conv_kernel_ == ops::ConvKernel::kLibTorch) return nn::SequentialImpl::forward(std::move(x));
  auto it = begin();
  const auto& conv = *it->get<nn::Conv2d>();
  const auto& o = conv.options;
  x = ops::conv2d(x, conv.weight, conv.bias, (*o.stride())[0], (*c10::get<torch::ExpandingArray<2>>(o.padding()))[0],
                  (*o.dilation())[0], o.groups(), conv_kernel_);
  for (++it; it != end(); ++it) x = it->forward<torch::Tensor>(x);
  return x;
}

}  // namespace instseg
