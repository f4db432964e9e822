#pragma once
#include <string>
#include <vector>

namespace instseg {

// Display names for torchvision's COCO models: index = label = COCO category id (91 entries,
// "N/A" for the ids COCO left unused, "__background__" at 0).
const std::vector<std::string>& coco_class_names();

// Name of `label` in `names`, or "class <label>" when the model has more classes than names.
std::string class_name(const std::vector<std::string>& names, int64_t label);

}  // namespace instseg
