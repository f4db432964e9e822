#include "instseg/modeling/backbone/frozen_batch_norm.h"

#include <torch/torch.h>

namespace instseg {

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(int64_t num_features, double eps) : eps_(eps) {
  // Identity until a checkpoint is loaded, as torchvision's initial values.
  weight = register_buffer("weight", torch::ones({num_features}));
  bias = register_buffer("bias", torch::zeros({num_features}));
  running_mean = register_buffer("running_mean", torch::zeros({num_features}));
  running_var = register_buffer("running_var", torch::ones({num_features}));
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor& x) {
  // Folded into one scale and shift, in torchvision's order of operations so results match bitwise.
  const auto scale = weight * (running_var + eps_).rsqrt();  // [C]
  const auto shift = bias - running_mean * scale;            // [C]
  return x * scale.view({1, -1, 1, 1}) + shift.view({1, -1, 1, 1});
}

std::string to_string(NormKind kind) {
  switch (kind) {
    case NormKind::kNone: return "none";
    case NormKind::kFrozenBatchNorm: return "frozen_batch_norm";
    case NormKind::kBatchNorm: return "batch_norm";
    case NormKind::kGroupNorm: return "group_norm";
  }
  return "unknown";
}

torch::nn::AnyModule make_norm(NormKind kind, int64_t channels) {
  switch (kind) {
    case NormKind::kFrozenBatchNorm: return torch::nn::AnyModule(FrozenBatchNorm2d(channels));
    case NormKind::kBatchNorm: return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
    case NormKind::kGroupNorm:
      return torch::nn::AnyModule(torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, channels)));
    case NormKind::kNone: break;
  }
  TORCH_CHECK(false, "make_norm: no norm layer for kind ", to_string(kind));
}

}  // namespace instseg
