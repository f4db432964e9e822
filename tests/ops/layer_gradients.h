#pragma once
// The output and the three gradients of a layer y = op(x, w, b) for a given dy, from fresh leaf
// copies of x, w and b: what the ops tests compare between our kernels and LibTorch's.
#include <torch/torch.h>

namespace instseg::ops::testing {

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
