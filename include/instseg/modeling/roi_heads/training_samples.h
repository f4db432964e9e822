#pragma once
// Which proposals the RoI heads learn from, as torchvision's RoIHeads.select_training_samples.
#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <optional>
#include <vector>

#include "instseg/modeling/roi_heads/losses.h"
#include "instseg/modeling/roi_heads/roi_heads.h"
#include "instseg/structures/detections.h"

namespace instseg {

// Per image: the ground-truth boxes are appended to the proposals (so every object has at least
// one perfect proposal), each proposal is matched to a GT box (Matcher(fg_iou, bg_iou), IoU in
// between ignored), batch_size_per_image proposals are drawn with at most positive_fraction
// foreground (from `generator`, torch's default one when absent), and regression targets are
// encoded with bbox_reg_weights. proposals [P_i, 4] and targets in the resized images' pixels.
std::vector<RoiSample> select_training_samples(const std::vector<torch::Tensor>& proposals,
                                               const std::vector<Targets>& targets,
                                               const RoiHeadsOptions& options,
                                               std::optional<at::Generator> generator = std::nullopt);

}  // namespace instseg
