#pragma once
// Copying a state dict into a module's parameters and buffers by dotted name, like Python's
// Module.load_state_dict, with every problem reported in one CheckpointError.
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "instseg/checkpoint/state_dict.h"

namespace instseg {

struct LoadOptions {
  // Missing and unexpected keys are errors (mis-shaped keys always are).
  bool strict = true;
  // When set (e.g. "backbone.body."), only module entries under this prefix are loaded and
  // expected; entries elsewhere in the module keep their values and are not reported missing.
  std::string scope;
};

struct LoadReport {
  int loaded = 0;
  std::vector<std::string> missing;     // in the module (within scope), not in the state dict
  std::vector<std::string> unexpected;  // in the state dict, not in the module (within scope)
};

// `source` names the checkpoint in messages (usually its path). Keys ending in
// ".num_batches_tracked" are ignored when only one side has them: random-init torchvision models
// use BatchNorm2d (which has it), pretrained ones FrozenBatchNorm2d (which has not).
LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state_dict, const std::string& source,
                           const LoadOptions& options = {});

}  // namespace instseg
