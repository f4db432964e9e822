#pragma once
// The output and the three gradients of a layer y = op(x, w, b) for a given dy, from fresh leaf
// copies of x, w and b, and how far one tensor is from another: what the ops tests compare
// between our kernels and LibTorch's.
#include <torch/torch.h>

namespace instseg::ops::testing {

// max |a - b| relative to max |b|: how far our kernel's tensor is from LibTorch's.
inline double relative(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

struct LayerGradients {
  torch::Tensor y, dx, dw, db;
};

template <typename F>
LayerGradients layer_gradients(F&& op, const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0,
                               const torch::Tensor& dy) {
  auto x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
  auto y = op(x, w, b);
  y.backward(dy);
  return {y.detach(), x.grad(), w.grad(), b.grad()};
}

}  // namespace instseg::ops::testing
