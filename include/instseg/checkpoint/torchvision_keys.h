#pragma once
// Key mappings between torchvision checkpoint layouts and our modules (which use torchvision
// 0.14's state-dict names exactly).
#include "instseg/checkpoint/state_dict.h"

namespace instseg {

// Renames pre-0.13 torchvision detection keys as torchvision 0.14's _load_from_state_dict does,
// keeping each key's position (the published maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth needs it):
//   backbone.fpn.{inner,layer}_blocks.N.{weight,bias} -> backbone.fpn.{inner,layer}_blocks.N.0.{weight,bias}
//   rpn.head.conv.{weight,bias}                        -> rpn.head.conv.0.0.{weight,bias}
//   roi_heads.mask_head.mask_fcnN.{weight,bias}        -> roi_heads.mask_head.<N-1>.0.{weight,bias}
// Current keys pass through unchanged.
StateDict upgrade_torchvision_keys(const StateDict& state_dict);

// Maps an ImageNet classification ResNet (torchvision resnet50-*.pth: conv1.weight, layer1.0...,
// fc.weight) onto a detector's backbone: prefixes "backbone.body." and drops the classifier fc.*.
// Load the result with LoadOptions{.scope = "backbone.body."}.
StateDict imagenet_to_backbone(const StateDict& state_dict);

}  // namespace instseg
