#pragma once
// Helpers shared by the model-stage tests: torchvision tensors from tests/reference/model_stages.py
// copied into C++ modules by name, and comparisons scaled to each tensor's magnitude.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <set>
#include <stdexcept>
#include <string>

#include "support/reference.h"

namespace instseg::testing {

using TensorDict = std::map<std::string, torch::Tensor>;

inline TensorDict load_stage(const std::string& file) {
  return load_tensors(reference_dir("model_stages") + "/" + file + ".pt");
}

// Copies dict[prefix + name] into every parameter and buffer of `module` (BatchNorm's
// num_batches_tracked aside, as torchvision's state dicts hold it but it never affects outputs).
// Throws naming the key when one is missing or mis-shaped, or when a dict key under `prefix` has
// no module counterpart: the module tree must mirror torchvision's names exactly.
inline void assign_state(torch::nn::Module& module, const TensorDict& dict, const std::string& prefix) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  auto assign = [&](const std::string& name, torch::Tensor& target) {
    if (name.size() >= 19 && name.rfind("num_batches_tracked") == name.size() - 19) return;
    const auto it = dict.find(prefix + name);
    if (it == dict.end()) throw std::runtime_error("missing key " + prefix + name);
    if (it->second.sizes() != target.sizes()) {
      throw std::runtime_error("key " + prefix + name + " has a different shape");
    }
    target.copy_(it->second);
    used.insert(it->first);
  };
  for (auto& item : module.named_parameters()) assign(item.key(), item.value());
  for (auto& item : module.named_buffers()) assign(item.key(), item.value());
  for (const auto& [key, value] : dict) {
    if (key.rfind(prefix, 0) == 0 && used.count(key) == 0) {
      throw std::runtime_error("unexpected key " + key);
    }
  }
}

// max |actual - expected| relative to max |expected|: float32 convolutions summed in another
// order differ by ~1e-6 of the magnitude per layer.
inline double relative_max_diff(const torch::Tensor& actual, const torch::Tensor& expected) {
  const double scale = expected.abs().max().item<double>();
  return (actual - expected).abs().max().item<double>() / std::max(scale, 1e-12);
}

}  // namespace instseg::testing
