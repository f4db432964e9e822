#pragma once
// The training optimizer: torch.optim.SGD (momentum, L2 weight decay) or torch.optim.AdamW
// (decoupled weight decay), with the same update as torch's and its state keyed by parameter name,
// so a checkpoint can store and restore it exactly.
#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace instseg {

struct OptimizerOptions {
  enum class Kind { kSgd, kAdamW };
  Kind kind = Kind::kSgd;
  double momentum = 0.9;       // SGD only
  double weight_decay = 1e-4;  // SGD: added to the gradient; AdamW: p *= 1 - lr * weight_decay
  double beta1 = 0.9;          // AdamW's moment decay rates and denominator term (torch defaults)
  double beta2 = 0.999;
  double eps = 1e-8;
};

class Optimizer {
 public:
  // Per-parameter state, as torch names it: slot ("momentum_buffer", "exp_avg", "exp_avg_sq",
  // "step") -> parameter name -> tensor.
  using State = std::map<std::string, std::map<std::string, torch::Tensor>>;

  Optimizer(const torch::nn::Module& model, OptimizerOptions options);

  // One update of every trainable parameter that has a gradient; the others are skipped and keep
  // their state, as in torch.
  //   SGD:   d = grad + wd * p; buf = momentum * buf + d (buf = d at first); p -= lr * buf
  //   AdamW: p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
  //          p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), t = this parameter's steps
  void step(double lr);
  void zero_grad();
  // Name of the first parameter whose gradient holds a NaN or infinity; empty when all are finite.
  std::string first_non_finite_gradient() const;
  // Rescales gradients so their global L2 norm is at most max_norm (0 = no limit); returns the
  // norm before, which is finite exactly when every gradient is (barring overflow).
  double clip_grad_norm(double max_norm);

  const State& state() const { return state_; }
  void set_state(State state) { state_ = std::move(state); }

 private:
  void sgd_update(const std::string& name, torch::Tensor& p, double lr);
  void adamw_update(const std::string& name, torch::Tensor& p, double lr);

  std::vector<std::pair<std::string, torch::Tensor>> params_;  // trainable ones only
  OptimizerOptions options_;
  State state_;
};

}  // namespace instseg
