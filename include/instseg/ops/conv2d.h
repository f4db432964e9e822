#pragma once
#include <torch/types.h>

namespace instseg::ops {

// Which kernels conv2d() runs.
enum class ConvKernel {
  kLibTorch,   // torch::conv2d: the parity reference
  kWinograd,   // oneDNN's Winograd F(4x4, 3x3) where it serves (conv2d_uses_winograd), LibTorch elsewhere
};

// y = conv2d(x, weight, bias, stride, padding, dilation, groups) for x [N, C, H, W], weight
// [O, C / groups, k, k], bias [O] or undefined, with gradients for all three. With kWinograd, fp32
// 3x3 stride-1 convolutions padded by 1, with channel counts multiples of 16, outside autocast, run forward, backward-data and backward-weights as
// oneDNN's Winograd kernels (2-2.7x its direct ones on 50-200 px maps of 128-256 channels, the
// FPN's and RPN's largest convolutions: docs/benchmarks.md, issue 16). Winograd transforms the
// tiles, so results differ from direct convolution by a few 1e-6 of the output's magnitude: the
// fp32 parity tests keep kLibTorch. The output has x's memory layout (channels-last stays so).
torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     int64_t stride, int64_t padding, int64_t dilation = 1, int64_t groups = 1,
                     ConvKernel kernel = ConvKernel::kLibTorch);

// Whether conv2d(..., kWinograd) takes the Winograd path for these operands and settings in the
// current autocast state on this CPU (oneDNN has the kernels on AVX-512 CPUs only).
bool conv2d_uses_winograd(const torch::Tensor& x, const torch::Tensor& weight, int64_t stride,
                          int64_t padding, int64_t dilation, int64_t groups);

}  // namespace instseg::ops
