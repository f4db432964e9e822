#include "instseg/engine/sgd.h"

#include <torch/torch.h>

namespace instseg {

Sgd::Sgd(const torch::nn::Module& model, double momentum, double weight_decay)
    : momentum_(momentum), weight_decay_(weight_decay) {
  for (const auto& item : model.named_parameters()) {
    if (item.value().requires_grad()) params_.emplace_back(item.key(), item.value());
  }
}

void Sgd::step(double lr) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params_) {
    if (!p.grad().defined()) continue;
    auto d = p.grad();
    if (weight_decay_ != 0) d = d.add(p, weight_decay_);
    if (momentum_ != 0) {
      auto it = buffers_.find(name);
      if (it == buffers_.end()) {
        it = buffers_.emplace(name, d.clone()).first;
      } else {
        it->second.mul_(momentum_).add_(d);
      }
      d = it->second;
    }
    p.add_(d, -lr);
  }
}

void Sgd::zero_grad() {
  for (auto& [name, p] : params_) {
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  }
}

std::string Sgd::first_non_finite_gradient() const {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params_) {
    if (p.grad().defined() && !torch::isfinite(p.grad()).all().item<bool>()) return name;
  }
  return {};
}

double Sgd::clip_grad_norm(double max_norm) {
  torch::NoGradGuard no_grad;
  double total = 0.0;
  for (auto& [name, p] : params_) {
    if (p.grad().defined()) total += p.grad().pow(2).sum().item<double>();
  }
  const double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (auto& [name, p] : params_) {
      if (p.grad().defined()) p.grad().mul_(scale);
    }
  }
  return norm;
}

}  // namespace instseg
