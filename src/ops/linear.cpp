#include "instseg/ops/linear.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

namespace instseg::ops {

namespace {

// Below this many multiply-adds the conversions to oneDNN's layout and back are a large part of
// the product; above it oneDNN was 3.4-7.7x faster forward and backward down to 512 x 256 -> 256
// (docs/benchmarks.md, issue 16).
constexpr int64_t kMinMultiplyAdds = int64_t{1} << 22;

}  // namespace

bool linear_uses_onednn(const torch::Tensor& x, const torch::Tensor& weight) {
  return x.dim() == 2 && weight.dim() == 2 && x.device().is_cpu() && x.scalar_type() == torch::kFloat &&
         weight.scalar_type() == torch::kFloat && !at::autocast::is_cpu_enabled() &&
         at::globalContext().userEnabledMkldnn() && x.size(0) > 0 &&
         x.size(0) * x.size(1) * weight.size(0) >= kMinMultiplyAdds;
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     LinearKernel kernel) {
  if (kernel == LinearKernel::kLibTorch || !linear_uses_onednn(x, weight)) {
    return torch::nn::functional::linear(x, weight, bias);
  }
  // to_mkldnn / to_dense are differentiable, and mkldnn_linear's backward is oneDNN's inner product
  // backward (data and weights): autograd needs nothing of ours.
  const c10::optional<at::Tensor> b = bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt;
  return at::mkldnn_linear(x.contiguous().to_mkldnn(), weight.contiguous(), b).to_dense();
}

}  // namespace instseg::ops
