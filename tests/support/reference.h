#pragma once
// Reference values produced by torchvision / pycocotools scripts under tests/reference/.
#include <torch/types.h>

#include <map>
#include <string>

namespace instseg::testing {

// Runs tests/reference/<script>.py once per build tree, and again after the script is edited
// (guarded by a lock, so parallel tests share one run); returns the folder it wrote into:
// <build>/reference/<script>/.
std::string reference_dir(const std::string& script);

// Reads a file written by Python's torch.save({name: tensor, ...}) (plain dict of tensors).
std::map<std::string, torch::Tensor> load_tensors(const std::string& path);

// Paths inside the repository (datasets/tiny_coco, tests/fixtures/coco_eval, ...).
std::string source_path(const std::string& relative);  // <repo>/<relative>

}  // namespace instseg::testing
