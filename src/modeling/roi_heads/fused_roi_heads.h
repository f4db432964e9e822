#pragma once
// The RoI heads' fused inference form (RoiHeads::prepare_inference). Pooled features arrive
// channels-last; the fully-connected layers read them as they lie ([R, 7, 7, C] flattened), with
// the first layer's input columns permuted once to that order; cls_score and bbox_pred are one
// product; conv5_mask (2x2, stride 2, transposed) is a 1x1 convolution to 4 x C channels, one C
// group per output sub-pixel, and only each detection's own class gets mask logits.
#include <ATen/core/Tensor.h>

#include <memory>
#include <utility>
#include <vector>

#include "instseg/ops/fused_conv.h"

namespace instseg {

class RoiHeadsImpl;

struct FusedRoiHeads {
  // Null when a norm layer cannot be folded (group norm): the heads keep their module code.
  static std::shared_ptr<const FusedRoiHeads> build(RoiHeadsImpl& heads, ops::InferencePrecision precision);

  // pooled [R, C, 7, 7] -> (class_logits [R, classes], box_deltas [R, 4 * classes]), fp32.
  std::pair<at::Tensor, at::Tensor> predict_boxes(const at::Tensor& pooled) const;
  // pooled [K, C, 14, 14], labels [K] -> logits [K, 1, 28, 28] of each detection's class, fp32.
  at::Tensor predict_mask_logits(const at::Tensor& pooled, const at::Tensor& labels) const;

  std::vector<ops::FusedConv2d> box_convs;  // v2's 4 convolutions; none in v1
  std::vector<ops::FusedLinear> box_fcs;    // fc6 (columns in [7, 7, C] order), fc7 / v2's one fc
  ops::FusedLinear box_out;                 // [cls_score; bbox_pred]
  int64_t num_classes = 0;
  std::vector<ops::FusedConv2d> mask_convs;
  ops::FusedConv2d mask_upsample;  // output channel (2 i + j) * C + c is sub-pixel (i, j), channel c
  at::Tensor mask_logit_weight;    // [classes, C] fp32
  at::Tensor mask_logit_bias;      // [classes]
};

}  // namespace instseg
