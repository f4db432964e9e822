#pragma once
// What both views of `instseg explain` start from: the image, its ground truth when given, and
// the model in eval mode.
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "instseg/modeling/mask_rcnn.h"
#include "instseg/structures/detections.h"

namespace instseg::explain {

struct ExplainInput {
  torch::Tensor image;              // [3, H, W] float RGB in [0, 1], the file's own size
  std::string image_name;           // file name, for captions
  std::optional<Targets> targets;   // ground truth in the image's pixels (labels are model labels)
  MaskRcnn model{nullptr};          // eval mode; its transform has the explain run's sizes
  bool has_weights = false;         // false: initialised from `seed` (the training view only)
  std::vector<std::string> class_names;  // index = label; [0] = "__background__"
  uint64_t seed = 0;
};

}  // namespace instseg::explain
