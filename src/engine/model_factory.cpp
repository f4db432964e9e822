#include "instseg/engine/model_factory.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "instseg/checkpoint/describe.h"
#include "instseg/checkpoint/load.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/checkpoint/torchvision_keys.h"
#include "instseg/engine/train_config.h"
#include "instseg/errors.h"

namespace instseg {

ModelOverrides overrides_from(double score_thresh, int detections_per_image, const std::string& mask_paste,
                              int min_size, int max_size, const std::string& mask_paste_setting) {
  ModelOverrides overrides;
  if (score_thresh >= 0) overrides.score_thresh = score_thresh;
  if (detections_per_image > 0) overrides.detections_per_image = detections_per_image;
  if (!mask_paste.empty()) overrides.mask_paste = mask_paste_named(mask_paste, mask_paste_setting);
  if (min_size > 0) overrides.min_size = min_size;
  if (max_size > 0) overrides.max_size = max_size;
  return overrides;
}

namespace fs = std::filesystem;

namespace {

// Class-dependent predictor layers: re-initialised when fine-tuning to another class count.
bool is_class_specific(const std::string& key) {
  return key.rfind("roi_heads.box_predictor.", 0) == 0 || key.rfind("roi_heads.mask_predictor.mask_fcn_logits.", 0) == 0;
}

// Starts a training model from a torchvision Mask R-CNN (any class count: predictor layers whose
// shapes differ keep their fresh initialisation) or an ImageNet ResNet (backbone body only).
void initialise_from(MaskRcnnImpl& model, const std::string& weights) {
  StateDict state = upgrade_torchvision_keys(read_state_dict(weights));
  const CheckpointInfo info = describe_checkpoint(state, weights);
  if (info.kind == CheckpointKind::kImageNetResNet) {
    LoadOptions options;
    options.scope = "backbone.body.";
    load_state_dict(model, imagenet_to_backbone(state), weights, options);
    return;
  }
  require_mask_rcnn(state, weights);
  if (info.num_classes != model.options().num_classes) {
    StateDict kept;
    for (auto& entry : state) {
      if (!is_class_specific(entry.first)) kept.push_back(std::move(entry));
    }
    state = std::move(kept);
    LoadOptions options;
    options.strict = false;  // the class-specific layers are expected to be missing
    const auto report = load_state_dict(model, state, weights, options);
    if (!report.unexpected.empty()) {
      throw CheckpointError(weights + ": " + std::to_string(report.unexpected.size()) +
                            " keys do not fit the model, e.g. '" + report.unexpected.front() + "'");
    }
    return;
  }
  load_state_dict(model, state, weights);
}

bool has_key(const StateDict& state, const std::string& key) {
  for (const auto& entry : state) {
    if (entry.first == key) return true;
  }
  return false;
}

// Size `dim` of the tensor `key`, or `fallback` when the checkpoint has no such key.
int64_t tensor_size(const StateDict& state, const std::string& key, int64_t fallback, int64_t dim = 0) {
  for (const auto& entry : state) {
    if (entry.first == key) return entry.second.size(dim);
  }
  return fallback;
}

}  // namespace

namespace {

// The model a bare torchvision-layout checkpoint holds, from its keys and tensor shapes.
MaskRcnnOptions recognise(const StateDict& state, const std::string& weights) {
  const CheckpointInfo info = require_mask_rcnn(state, weights);
  MaskRcnnOptions options = info.version == 2 ? MaskRcnnOptions::v2() : MaskRcnnOptions::v1();
  options.num_classes = info.num_classes;
  options.backbone.depth = info.depth;
  // A backbone trained from scratch with group norm has affine weights but no running statistics.
  if (!has_key(state, "backbone.body.bn1.running_mean")) options.backbone.norm = NormKind::kGroupNorm;
  // Widths other than torchvision's (a narrow model trained here) show in the tensor shapes.
  options.backbone.out_channels = tensor_size(state, "backbone.fpn.layer_blocks.0.0.weight", 256);
  options.roi_heads.mask_channels = tensor_size(state, "roi_heads.mask_head.0.0.weight", 256);
  options.roi_heads.representation_size =
      tensor_size(state, "roi_heads.box_predictor.cls_score.weight", 1024, /*dim=*/1);
  return options;
}

// A checkpoint alone describes only a body that feeds layer1..layer4 to the FPN: other
// returned_layers need anchor sizes, one list per level, that only the model's description holds.
void require_four_levels(const StateDict& state, const std::string& weights) {
  if (!has_key(state, "backbone.body.layer4.0.conv1.weight") || has_key(state, "backbone.fpn.inner_blocks.4.0.weight") ||
      !has_key(state, "backbone.fpn.inner_blocks.3.0.weight")) {
    throw CheckpointError(weights + ": its backbone does not feed layer1..layer4 to a 4-level FPN "
                          "('backbone.body.layer4.*' or 'backbone.fpn.inner_blocks.3.*' is missing): a model with other "
                          "model.backbone.returned_layers, whose anchor sizes the file does not hold; load it with the "
                          "config.json of its run beside it");
  }
}

void apply(const ModelOverrides& overrides, MaskRcnnOptions& options) {
  if (overrides.min_size) options.transform.min_size = {*overrides.min_size};
  if (overrides.max_size) options.transform.max_size = *overrides.max_size;
  if (overrides.score_thresh) options.roi_heads.score_thresh = *overrides.score_thresh;
  if (overrides.detections_per_image) options.roi_heads.detections_per_img = *overrides.detections_per_image;
  if (overrides.mask_paste) options.mask_paste = *overrides.mask_paste;
}

MaskRcnn build_and_load(MaskRcnnOptions options, const StateDict& state, const std::string& weights,
                        const std::string& described_by) {
  try {
    options.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(described_by + ": model." + e.what());
  }
  MaskRcnn model(options);
  load_state_dict(*model, state, weights);
  model->eval();
  return model;
}

void prepare(const ModelOverrides& overrides, MaskRcnnImpl& model) {
  if (overrides.fused) model.prepare_inference(overrides.precision);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string() + ": cannot read");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

MaskRcnn load_mask_rcnn(const std::string& weights, const ModelOverrides& overrides) {
  const StateDict state = upgrade_torchvision_keys(read_state_dict(weights));
  MaskRcnnOptions options = recognise(state, weights);
  require_four_levels(state, weights);
  apply(overrides, options);
  MaskRcnn model = build_and_load(options, state, weights, weights);
  prepare(overrides, *model);
  return model;
}

LoadedModel load_model(const std::string& path, const ModelOverrides& overrides) {
  LoadedModel loaded;
  std::error_code ec;
  const bool is_run_folder = fs::is_directory(path, ec);
  loaded.weights = is_run_folder ? (fs::path(path) / "model_last.pth").string() : path;
  const fs::path dir = is_run_folder ? fs::path(path) : fs::path(path).parent_path();
  if (is_run_folder && !fs::exists(loaded.weights)) {
    throw CheckpointError(path + ": a folder without model_last.pth (a run folder holds config.json and model_last.pth)");
  }
  const StateDict state = upgrade_torchvision_keys(read_state_dict(loaded.weights));
  MaskRcnnOptions options;
  if (fs::exists(dir / "config.json")) {
    loaded.config_file = (dir / "config.json").string();
    // A run's config.json names every key; one that names only some (written by hand, or before
    // model.num_classes was recorded) is completed from what the checkpoint shows.
    options = load_train_config(loaded.config_file).model.over(recognise(state, loaded.weights));
  } else if (is_run_folder) {
    throw ConfigError(path + ": a run folder without config.json");
  } else {
    options = recognise(state, loaded.weights);
    require_four_levels(state, loaded.weights);
  }
  apply(overrides, options);
  loaded.model = build_and_load(options, state, loaded.weights,
                                loaded.config_file.empty() ? loaded.weights : loaded.config_file);
  prepare(overrides, *loaded.model);
  if (const fs::path categories = dir / "categories.json"; fs::exists(categories)) {
    loaded.categories = data::CategoryMap::from_json(read_text(categories), categories.string());
  }
  return loaded;
}

MaskRcnn build_mask_rcnn_for_training(const ModelConfig& config, int64_t num_classes) {
  MaskRcnnOptions options = config.options;
  if (config.is_set("model.num_classes") && options.num_classes != num_classes) {
    throw ConfigError("model.num_classes is " + std::to_string(options.num_classes) + " but the data has " +
                      std::to_string(num_classes - 1) + " categories + background = " + std::to_string(num_classes));
  }
  options.num_classes = static_cast<int>(num_classes);
  try {
    options.validate();
  } catch (const ConfigError& e) {
    throw ConfigError("model." + std::string(e.what()));
  }
  MaskRcnn model(options);
  if (!config.weights.empty()) initialise_from(*model, config.weights);
  return model;
}

}  // namespace instseg
