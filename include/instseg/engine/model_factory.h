#pragma once
// Builds the Mask R-CNN a checkpoint describes (variant, depth, classes) and loads its weights.
#include <optional>
#include <string>

#include "instseg/engine/train_config.h"
#include "instseg/modeling/mask_rcnn.h"

namespace instseg {

// Inference settings a user may change without touching the weights.
struct ModelOverrides {
  std::optional<int> min_size;
  std::optional<int> max_size;
  std::optional<double> score_thresh;
  std::optional<MaskPaste> mask_paste;
};

// "torchvision" | "aligned" (ModelConfig::mask_paste, predict's --mask-paste); throws ConfigError
// naming `field` otherwise.
MaskPaste mask_paste_named(const std::string& name, const std::string& field);

// Reads a torchvision-layout Mask R-CNN checkpoint, recognises v1/v2, the ResNet depth and the
// number of classes from its keys, builds that model in eval mode and loads the weights strictly.
// Throws CheckpointError (naming the file) for unreadable files or another architecture.
MaskRcnn load_mask_rcnn(const std::string& weights, const ModelOverrides& overrides = {});

// A model to train: architecture from the config, num_classes including background. When
// config.weights names a torchvision Mask R-CNN it is loaded (its class-specific predictor layers
// are skipped when the class count differs: fine-tuning); an ImageNet ResNet fills the backbone
// body only.
MaskRcnn build_mask_rcnn_for_training(const ModelConfig& config, int64_t num_classes);

}  // namespace instseg
