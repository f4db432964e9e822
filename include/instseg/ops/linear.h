#pragma once
#include <torch/types.h>

namespace instseg::ops {

// Which kernels linear() runs.
enum class LinearKernel {
  kLibTorch,  // torch::nn::functional::linear: BLAS in fp32, as torchvision (the parity reference)
  kOneDnn,    // oneDNN inner products where they pay (linear_uses_onednn), LibTorch elsewhere
};

// y = x W^T + b for x [M, K], weight [N, K], bias [N] or undefined, with gradients. With kOneDnn,
// large fp32 products outside autocast run as oneDNN inner products (LibTorch's mkldnn_linear,
// forward and backward) instead of LibTorch's BLAS path: the box head's fc6 in R50 training (1024
// RoIs, 12544 -> 1024) took 0.43 s forward and backward instead of 1.49 s (docs/benchmarks.md).
// The same numbers within float rounding, not the same bits: oneDNN sums in another order, so the
// fp32 training parity tests keep kLibTorch. Under bf16 autocast LibTorch already gives bfloat16
// products to oneDNN, so those keep its path, as do small products (tests/ops/linear_test.cpp).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     LinearKernel kernel = LinearKernel::kLibTorch);

// Whether linear(..., kOneDnn) takes the oneDNN path for these operands in the current autocast state.
bool linear_uses_onednn(const torch::Tensor& x, const torch::Tensor& weight);

}  // namespace instseg::ops
