#pragma once
// Reference values produced by torchvision / pycocotools scripts under tests/reference/.
#include <torch/types.h>

#include <map>
#include <string>

namespace instseg::testing {

// Runs tests/reference/<script>.py once per build tree and returns the folder it wrote into:
// <build>/reference/<script>/. The cached values are reused while their key is unchanged: a hash
// of the script, the local modules it imports (tests/reference/, bench/), the installed torch and
// torchvision versions, and the repository files or folders the script lists on a line
// "# reference-inputs: datasets/... ..." (a script reading data it does not list there goes stale
// silently, so list every input). A lock makes parallel tests share one run.
std::string reference_dir(const std::string& script);

// Reads a file written by Python's torch.save({name: tensor, ...}) (plain dict of tensors).
std::map<std::string, torch::Tensor> load_tensors(const std::string& path);

// Paths inside the repository (datasets/tiny_coco, tests/fixtures/coco_eval, ...).
std::string source_path(const std::string& relative);  // <repo>/<relative>

}  // namespace instseg::testing
