#include "instseg/ops/upsample_conv.h"

#include <torch/torch.h>

namespace instseg::ops {

torch::Tensor upsample_conv2x2(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  TORCH_CHECK(x.dim() == 4 && weight.dim() == 4 && weight.size(2) == 2 && weight.size(3) == 2 &&
                  weight.size(0) == x.size(1),
              "upsample_conv2x2: need x [N, C, H, W] and weight [C, O, 2, 2], got ", x.sizes(), " and ",
              weight.sizes());
  // Without gradients LibTorch's kernel is the faster one for 256 channels (100 RoIs: 0.37 vs 0.71
  // s): the gain below is in the backward pass.
  const bool needs_grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                                            (bias.defined() && bias.requires_grad()));
  // pixel_shuffle cannot take an empty batch (no RoIs); LibTorch's kernel can, at no cost.
  if (!needs_grad || x.size(0) == 0) return torch::conv_transpose2d(x, weight, bias, 2);
  const int64_t c = x.size(1), o = weight.size(1);
  // A 1x1 convolution to O*2*2 channels, then pixel_shuffle moves channel (o, i, j) to pixel
  // (2y + i, 2x + j) of channel o: both have kernels of their own, forward and backward, where a
  // matrix product with a permuted reshape spent a third of its time copying (docs/benchmarks.md).
  const auto pointwise = weight.permute({1, 2, 3, 0}).reshape({o * 4, c, 1, 1});  // [(o, i, j), C, 1, 1]
  auto y = torch::pixel_shuffle(torch::conv2d(x, pointwise), 2);                 // [N, O, 2H, 2W]
  // Under bfloat16 autocast the bias joins in the product's precision, as conv_transpose2d's would.
  if (bias.defined()) y = y + bias.view({1, o, 1, 1}).to(y.scalar_type());
  return y;
}

}  // namespace instseg::ops
