#pragma once
// The one way to get a model: load_model() for inference (a run folder, a checkpoint beside its
// config.json, or a bare torchvision checkpoint) and build_mask_rcnn_for_training() for a run.
#include <cstdint>
#include <optional>
#include <string>

#include "instseg/data/category_map.h"
#include "instseg/modeling/mask_rcnn.h"

namespace instseg {

struct ModelConfig;

// Inference settings a user may change without touching the weights, applied over what the
// model's description says (unset = as described).
struct ModelOverrides {
  std::optional<int> min_size;  // the input's shorter side (transform.min_size becomes {it})
  std::optional<int> max_size;
  std::optional<double> score_thresh;  // roi_heads.score_thresh
  std::optional<int> detections_per_image;  // roi_heads.detections_per_img
  std::optional<MaskPaste> mask_paste;
  // How predict computes, not what: the fused CPU path (MaskRcnn::prepare_inference) in
  // `precision`, or with fused = false the stages' module code (fp32, the reference).
  bool fused = true;
  ops::InferencePrecision precision = ops::InferencePrecision::kFloat32;
};

// The model settings `predict`, `serve` and the embedding API take on top of a model's
// description, each "unset" as their options document it (score_thresh < 0, 0, "" and 0): only
// what was set becomes an override. `mask_paste_setting` names the option in errors
// ("predict: --mask-paste").
ModelOverrides overrides_from(double score_thresh, int detections_per_image, const std::string& mask_paste,
                              int min_size, int max_size, const std::string& mask_paste_setting);

struct LoadedModel {
  MaskRcnn model{nullptr};  // in eval mode, weights loaded strictly
  std::string weights;      // the .pth file read
  std::string config_file;  // the config.json that described it; empty for a bare checkpoint
  // The data's categories (categories.json beside the weights, written by training); empty for a
  // torchvision model, whose labels are COCO's category ids.
  std::optional<data::CategoryMap> categories;
};

// `path` is one of:
// - a run folder (written by `instseg train` or `demo`): its config.json and model_last.pth, the
//   weights its metrics.json and val_predictions.json describe;
// - a .pth with a config.json beside it (model_best.pth of a run): that description;
// - a bare torchvision checkpoint: v1/v2, ResNet depth, class count and widths recognised from its
//   keys and tensor shapes, torchvision's inference defaults (800 / 1333 px, 0.05, 100).
// `overrides` apply on top. Throws CheckpointError / ConfigError naming the file (and key).
LoadedModel load_model(const std::string& path, const ModelOverrides& overrides = {});

// The architecture a bare torchvision-layout Mask R-CNN checkpoint holds (no config.json read),
// built in eval mode with its weights loaded strictly.
MaskRcnn load_mask_rcnn(const std::string& weights, const ModelOverrides& overrides = {});

// A model to train: the architecture of config.options with num_classes (including background)
// from the data. When config.weights names a torchvision Mask R-CNN it is loaded (its
// class-specific predictor layers are skipped when the class count differs: fine-tuning); an
// ImageNet ResNet fills the backbone body only. A model.num_classes set in the config must equal
// the data's (ConfigError otherwise).
MaskRcnn build_mask_rcnn_for_training(const ModelConfig& config, int64_t num_classes);

}  // namespace instseg
