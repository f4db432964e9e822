#include "instseg/modeling/layers/norm.h"

#include <torch/torch.h>

#include "modeling/named_enum.h"

namespace instseg {

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(int64_t num_features, double eps) : eps_(eps) {
  // Identity until a checkpoint is loaded, as torchvision's initial values.
  weight = register_buffer("weight", torch::ones({num_features}));
  bias = register_buffer("bias", torch::zeros({num_features}));
  running_mean = register_buffer("running_mean", torch::zeros({num_features}));
  running_var = register_buffer("running_var", torch::ones({num_features}));
}

std::pair<torch::Tensor, torch::Tensor> FrozenBatchNorm2dImpl::scale_and_shift() const {
  // In torchvision's order of operations, so that forward() matches it bitwise.
  const auto scale = weight * (running_var + eps_).rsqrt();  // [C]
  return {scale, bias - running_mean * scale};
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor& x) {
  const auto [scale, shift] = scale_and_shift();
  return x * scale.view({1, -1, 1, 1}) + shift.view({1, -1, 1, 1});
}

torch::Tensor GroupNormImpl::forward(const torch::Tensor& x) {
  if (!weight.defined() || x.scalar_type() == weight.scalar_type()) return torch::nn::GroupNormImpl::forward(x);
  return torch::group_norm(x.to(weight.scalar_type()), options.num_groups(), weight, bias, options.eps());
}

namespace {

const detail::NameTable<NormKind, 4> kNormNames{{{"frozen_batch_norm", NormKind::kFrozenBatchNorm},
                                                 {"batch_norm", NormKind::kBatchNorm},
                                                 {"group_norm", NormKind::kGroupNorm},
                                                 {"none", NormKind::kNone}}};

}  // namespace

std::string to_string(NormKind kind) { return detail::name_of(kNormNames, kind); }

NormKind norm_kind_named(const std::string& name, const std::string& key) {
  return detail::value_named(kNormNames, name, key);
}

torch::nn::AnyModule make_norm(NormKind kind, int64_t channels) {
  switch (kind) {
    case NormKind::kFrozenBatchNorm: return torch::nn::AnyModule(FrozenBatchNorm2d(channels));
    case NormKind::kBatchNorm: return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
    case NormKind::kGroupNorm:
      return torch::nn::AnyModule(GroupNorm(torch::nn::GroupNormOptions(32, channels)));
    case NormKind::kNone: break;
  }
  TORCH_CHECK(false, "make_norm: no norm layer for kind ", to_string(kind));
}

}  // namespace instseg
