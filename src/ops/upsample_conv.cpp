#include "instseg/ops/upsample_conv.h"

#include <torch/torch.h>

namespace instseg::ops {

torch::Tensor upsample_conv2x2(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  TORCH_CHECK(x.dim() == 4 && weight.dim() == 4 && weight.size(2) == 2 && weight.size(3) == 2 &&
                  weight.size(0) == x.size(1),
              "upsample_conv2x2: need x [N, C, H, W] and weight [C, O, 2, 2], got ", x.sizes(), " and ",
              weight.sizes());
  // Without gradients LibTorch's kernel is the faster one (0.48 vs 0.81 s for 100 RoIs of 256
  // channels): the matrix product's gain is all in the backward pass.
  const bool needs_grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                                            (bias.defined() && bias.requires_grad()));
  if (!needs_grad) return torch::conv_transpose2d(x, weight, bias, 2);
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), o = weight.size(1);
  // [N, H, W, C] x [C, O*2*2] -> [N, H, W, O, 2, 2] -> [N, O, H, 2, W, 2] = [N, O, 2H, 2W]
  const auto blocks = torch::matmul(x.permute({0, 2, 3, 1}), weight.reshape({c, o * 4}));
  auto y = blocks.view({n, h, w, o, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({n, o, 2 * h, 2 * w});
  // Under bfloat16 autocast the bias joins in the product's precision, as conv_transpose2d's would.
  if (bias.defined()) y = y + bias.view({1, o, 1, 1}).to(y.scalar_type());
  return y;
}

}  // namespace instseg::ops
