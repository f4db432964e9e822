#pragma once
// Helpers shared by the checkpoint tests: reference files and the checksum tests/reference/checkpoint.py writes.
#include <torch/torch.h>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "instseg/errors.h"
#include "support/input_error.h"
#include "support/reference.h"

namespace instseg::testing {

inline std::string checkpoint_ref(const std::string& name) { return reference_dir("checkpoint") + "/" + name; }

// The message of the CheckpointError that f throws, or "(no CheckpointError)".
inline std::string checkpoint_error_of(const std::function<void()>& f) {
  return error_message_of<CheckpointError>(f, "(no CheckpointError)");
}

// [byte-word sum, position-weighted sum, ndim, *shape] in int64, as checksum() in checkpoint.py.
inline torch::Tensor checksum(const torch::Tensor& tensor) {
  auto t = tensor.contiguous();
  if (t.scalar_type() == torch::kBool) t = t.view(torch::kUInt8);
  auto words = t.reshape(-1).view(torch::kUInt8);
  if (words.numel() % 4 == 0) words = words.view(torch::kInt);
  words = words.to(torch::kLong);
  const auto weights = torch::arange(1, words.numel() + 1, torch::kLong);
  std::vector<int64_t> out = {words.sum().item<int64_t>(), (words * weights).sum().item<int64_t>(), t.dim()};
  for (auto s : t.sizes()) out.push_back(s);
  return torch::tensor(out, torch::kLong);
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace instseg::testing
