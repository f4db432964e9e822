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
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), o = weight.size(1);
  torch::Tensor y;
  if (x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous()) {
    // Channels-last (training steps with that setting): the 1x1 convolution's channels ordered
    // (i, j, o), so each input pixel's NHWC output is its 2x2 block, [2][2][O]; moving row i of
    // every block under row 2y + i is then a copy of contiguous runs of 2*O values, forward and
    // backward. pixel_shuffle on channels-last tensors took several times longer.
    const auto pointwise = weight.permute({2, 3, 1, 0}).reshape({4 * o, c, 1, 1});  // [(i, j, o), C, 1, 1]
    const auto blocks = torch::conv2d(x, pointwise).permute({0, 2, 3, 1});          // [N, H, W, (i, j, o)]
    y = blocks.reshape({n, h, w, 2, 2 * o}).transpose(2, 3).reshape({n, 2 * h, 2 * w, o}).permute({0, 3, 1, 2});
  } else {
    // A 1x1 convolution to O*2*2 channels, then pixel_shuffle moves channel (o, i, j) to pixel
    // (2y + i, 2x + j) of channel o: both have kernels of their own, forward and backward, where a
    // matrix product with a permuted reshape spent a third of its time copying (docs/benchmarks.md).
    const auto pointwise = weight.permute({1, 2, 3, 0}).reshape({o * 4, c, 1, 1});  // [(o, i, j), C, 1, 1]
    y = torch::pixel_shuffle(torch::conv2d(x, pointwise), 2);                        // [N, O, 2H, 2W]
  }
  // Under bfloat16 autocast the bias joins in the product's precision, as conv_transpose2d's would.
  if (bias.defined()) y = y + bias.view({1, o, 1, 1}).to(y.scalar_type());
  return y;
}

}  // namespace instseg::ops
