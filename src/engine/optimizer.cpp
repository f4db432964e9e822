#include "instseg/engine/optimizer.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>

#include "engine/adamw_kernel.h"

namespace instseg {

Optimizer::Optimizer(const torch::nn::Module& model, OptimizerOptions options) : options_(options) {
  for (const auto& item : model.named_parameters()) {
    if (item.value().requires_grad()) params_.emplace_back(item.key(), item.value());
  }
}

void Optimizer::step(double lr) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params_) {
    if (!p.grad().defined()) continue;
    if (options_.kind == OptimizerOptions::Kind::kAdamW) {
      adamw_update(name, p, lr);
    } else {
      sgd_update(name, p, lr);
    }
  }
}

void Optimizer::sgd_update(const std::string& name, torch::Tensor& p, double lr) {
  auto d = p.grad();
  if (options_.weight_decay != 0) d = d.add(p, options_.weight_decay);
  if (options_.momentum != 0) {
    auto& buffers = state_["momentum_buffer"];
    auto it = buffers.find(name);
    if (it == buffers.end()) {
      it = buffers.emplace(name, d.clone()).first;
    } else {
      it->second.mul_(options_.momentum).add_(d);
    }
    d = it->second;
  }
  p.add_(d, -lr);
}

void Optimizer::adamw_update(const std::string& name, torch::Tensor& p, double lr) {
  auto& step = state_["step"][name];
  auto& exp_avg = state_["exp_avg"][name];
  auto& exp_avg_sq = state_["exp_avg_sq"][name];
  if (!step.defined()) {
    step = torch::zeros({}, torch::kFloat);  // a float tensor, as torch 1.13 keeps it
    exp_avg = torch::zeros_like(p);
    exp_avg_sq = torch::zeros_like(p);
  }
  step.add_(1);
  const double t = step.item<double>();
  const double bias_correction1 = 1 - std::pow(options_.beta1, t);
  const double bias_correction2_sqrt = std::sqrt(1 - std::pow(options_.beta2, t));
  // The one-pass loop below walks the four tensors' memory in order, so it serves any dense
  // parameter (channels-last convolution weights included) once its gradient and moments share the
  // parameter's strides: a gradient in another layout is copied into the parameter's, and moments
  // restored in another layout are converted once. Anything else takes the tensor operations.
  if (!p.device().is_cpu() || !p.is_non_overlapping_and_dense()) {
    const auto grad = p.grad();
    p.mul_(1 - lr * options_.weight_decay);
    exp_avg.mul_(options_.beta1).add_(grad, 1 - options_.beta1);
    exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1 - options_.beta2);
    const auto denominator = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(exp_avg, denominator, -lr / bias_correction1);
    return;
  }
  const auto in_layout_of_p = [&](const torch::Tensor& t) {
    return t.strides() == p.strides() ? t : torch::empty_like(p).copy_(t);
  };
  exp_avg = in_layout_of_p(exp_avg);
  exp_avg_sq = in_layout_of_p(exp_avg_sq);
  const auto grad = in_layout_of_p(p.grad());
  // The same arithmetic in one pass over memory instead of eight tensor ops: the update of the
  // demo's 12M parameters is memory-bound, and this cuts its share of a training step.
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "adamw_update", [&] {
    using T = scalar_t;
    AdamWCoefficients<T> k{};
    k.decay = static_cast<T>(1 - lr * options_.weight_decay);
    k.b1 = static_cast<T>(options_.beta1), k.b2 = static_cast<T>(options_.beta2);
    k.one_minus_b1 = static_cast<T>(1 - options_.beta1), k.one_minus_b2 = static_cast<T>(1 - options_.beta2);
    k.bc2 = static_cast<T>(bias_correction2_sqrt), k.eps = static_cast<T>(options_.eps);
    k.step_size = static_cast<T>(lr / bias_correction1);
    T* param = p.data_ptr<T>();
    const T* g = grad.data_ptr<T>();
    T* m = exp_avg.data_ptr<T>();
    T* v = exp_avg_sq.data_ptr<T>();
    at::parallel_for(0, p.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
      adamw_span(param + begin, g + begin, m + begin, v + begin, end - begin, k);
    });
  });
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) {
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  }
}

std::string Optimizer::first_non_finite_gradient() const {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params_) {
    if (p.grad().defined() && !torch::isfinite(p.grad()).all().item<bool>()) return name;
  }
  return {};
}

double Optimizer::clip_grad_norm(double max_norm) {
  torch::NoGradGuard no_grad;
  double total = 0.0;
  for (auto& [name, p] : params_) {
    if (!p.grad().defined()) continue;
    const double norm = at::linalg_vector_norm(p.grad(), 2).item<double>();  // one pass, no temporary
    total += norm * norm;
  }
  const double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm)) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& [name, p] : params_) {
      if (p.grad().defined()) p.grad().mul_(scale);
    }
  }
  return norm;
}

}  // namespace instseg
