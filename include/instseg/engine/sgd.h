#pragma once
// SGD with momentum and weight decay, torch.optim.SGD's update, with its state keyed by parameter
// name so a checkpoint can store and restore it exactly.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace instseg {

class Sgd {
 public:
  Sgd(const torch::nn::Module& model, double momentum, double weight_decay);

  // One update: d = grad + weight_decay * p; buf = momentum * buf + d (buf = d at first);
  // p -= lr * buf. Parameters without a gradient are skipped, as torch.optim.SGD.
  void step(double lr);
  void zero_grad();
  // Name of the first parameter whose gradient holds a NaN or infinity; empty when all are finite.
  std::string first_non_finite_gradient() const;
  // Rescales gradients so their global L2 norm is at most max_norm; returns the norm before.
  double clip_grad_norm(double max_norm);

  const std::map<std::string, torch::Tensor>& momentum_buffers() const { return buffers_; }
  void set_momentum_buffers(std::map<std::string, torch::Tensor> buffers) { buffers_ = std::move(buffers); }

 private:
  std::vector<std::pair<std::string, torch::Tensor>> params_;  // trainable ones only
  std::map<std::string, torch::Tensor> buffers_;
  double momentum_, weight_decay_;
};

}  // namespace instseg
