#pragma once
// Recognising what a torchvision checkpoint holds from its keys and shapes.
#include <string>

#include "instseg/checkpoint/state_dict.h"

namespace instseg {

enum class CheckpointKind { kMaskRcnn, kFasterRcnn, kImageNetResNet };

struct CheckpointInfo {
  CheckpointKind kind = CheckpointKind::kMaskRcnn;
  int version = 0;      // detectors: 1 (maskrcnn_resnet50_fpn) or 2 (maskrcnn_resnet50_fpn_v2); else 0
  int depth = 0;        // ResNet depth: 18, 34, 50, 101 or 152
  int num_classes = 0;  // detectors: rows of cls_score (background included); ImageNet: rows of fc
  bool has_masks = false;
};

// Throws CheckpointError naming `source` when the keys fit none of the kinds above.
CheckpointInfo describe_checkpoint(const StateDict& state_dict, const std::string& source);

// describe_checkpoint, then a CheckpointError saying what the file is instead when it is not a
// Mask R-CNN detector (an ImageNet ResNet belongs in the backbone; a Faster R-CNN has no mask head).
CheckpointInfo require_mask_rcnn(const StateDict& state_dict, const std::string& source);

// "Mask R-CNN v1, ResNet-50-FPN, 91 classes" and the like.
std::string to_string(const CheckpointInfo& info);

}  // namespace instseg
