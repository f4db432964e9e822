#pragma once
// Shared by the RoI-head and Mask R-CNN tests: the torchvision values written by
// tests/reference/end_to_end.py and a by-name copy of its state dicts into a module.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <map>
#include <string>
#include <vector>

#include "instseg/structures/image_list.h"
#include "support/reference.h"

namespace instseg::testing {

using TensorDict = std::map<std::string, torch::Tensor>;

// <build>/reference/end_to_end/<name>.pt, e.g. "stages_v1".
inline TensorDict end_to_end_reference(const std::string& name) {
  return load_tensors(reference_dir("end_to_end") + "/" + name + ".pt");
}

inline bool is_batch_counter(const std::string& key) {
  return key.size() >= 19 && key.compare(key.size() - 19, 19, "num_batches_tracked") == 0;
}

// Copies state[prefix + name] into every parameter and buffer of `module` (num_batches_tracked
// excepted). Fails the test on a missing key or a shape mismatch; returns the number copied.
inline int copy_state_counted(torch::nn::Module& module, const TensorDict& state,
                        const std::string& prefix = "") {
  torch::NoGradGuard no_grad;
  int copied = 0;
  auto copy = [&](const std::string& name, torch::Tensor& target) {
    if (is_batch_counter(name)) return;
    const auto it = state.find(prefix + name);
    if (it == state.end()) {
      ADD_FAILURE() << "state dict has no key " << prefix + name;
      return;
    }
    if (it->second.sizes() != target.sizes()) {
      ADD_FAILURE() << prefix + name << ": shape " << it->second.sizes() << ", module has "
                    << target.sizes();
      return;
    }
    target.copy_(it->second);
    ++copied;
  };
  for (auto& p : module.named_parameters()) copy(p.key(), p.value());
  for (auto& b : module.named_buffers()) copy(b.key(), b.value());
  return copied;
}

// The FPN maps "0".."3" saved by the stages dump.
inline FeatureMaps stage_features(const TensorDict& stages) {
  FeatureMaps features;
  for (const char* name : {"0", "1", "2", "3"}) features.push_back({name, stages.at(std::string("feat_") + name)});
  return features;
}

inline std::vector<std::array<int64_t, 2>> stage_image_sizes(const TensorDict& stages) {
  const auto sizes = stages.at("image_sizes");
  std::vector<std::array<int64_t, 2>> out;
  for (int64_t i = 0; i < sizes.size(0); ++i) {
    out.push_back({sizes[i][0].item<int64_t>(), sizes[i][1].item<int64_t>()});
  }
  return out;
}

// Per-image tensors saved as <prefix>0, <prefix>1, ...
inline std::vector<torch::Tensor> per_image(const TensorDict& d, const std::string& prefix) {
  std::vector<torch::Tensor> out;
  for (int i = 0; d.count(prefix + std::to_string(i)); ++i) out.push_back(d.at(prefix + std::to_string(i)));
  return out;
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// Pairs each detection of `ours` with the unpaired torchvision detection of the same label and
// the highest box IoU (if >= min_iou). Detections are [K, 4] boxes, [K] scores, [K] labels.
struct DetectionMatch {
  std::vector<std::pair<int64_t, int64_t>> pairs;  // (ours, theirs)
  int64_t unmatched_ours = 0, unmatched_theirs = 0;
  double min_iou = 1.0;         // over the pairs
  double max_score_diff = 0.0;  // over the pairs
};

inline DetectionMatch match_detections(const torch::Tensor& boxes, const torch::Tensor& scores,
                                       const torch::Tensor& labels, const torch::Tensor& ref_boxes,
                                       const torch::Tensor& ref_scores, const torch::Tensor& ref_labels,
                                       double min_iou = 0.99) {
  DetectionMatch m;
  const int64_t n = boxes.size(0), r = ref_boxes.size(0);
  std::vector<bool> used(r, false);
  const auto b = boxes.to(torch::kDouble), rb = ref_boxes.to(torch::kDouble);
  const auto area = [](const torch::Tensor& x) { return (x[2] - x[0]) * (x[3] - x[1]); };
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = -1;
    double best_iou = min_iou;
    for (int64_t j = 0; j < r; ++j) {
      if (used[j] || labels[i].item<int64_t>() != ref_labels[j].item<int64_t>()) continue;
      const auto lt = torch::max(b[i].slice(0, 0, 2), rb[j].slice(0, 0, 2));
      const auto rbm = torch::min(b[i].slice(0, 2), rb[j].slice(0, 2));
      const auto wh = (rbm - lt).clamp_min(0);
      const double inter = (wh[0] * wh[1]).item<double>();
      const double iou = inter / (area(b[i]) + area(rb[j]) - inter).item<double>();
      if (iou >= best_iou) best = j, best_iou = iou;
    }
    if (best < 0) {
      ++m.unmatched_ours;
      continue;
    }
    used[best] = true;
    m.pairs.emplace_back(i, best);
    m.min_iou = std::min(m.min_iou, best_iou);
    m.max_score_diff = std::max(
        m.max_score_diff, std::abs(scores[i].item<double>() - ref_scores[best].item<double>()));
  }
  m.unmatched_theirs = r - static_cast<int64_t>(m.pairs.size());
  return m;
}

}  // namespace instseg::testing
