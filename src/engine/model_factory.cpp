#include "instseg/engine/model_factory.h"

#include <torch/torch.h>

#include <iostream>

#include "instseg/checkpoint/describe.h"
#include "instseg/checkpoint/load.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/checkpoint/torchvision_keys.h"
#include "instseg/errors.h"

namespace instseg {

namespace {

NormKind backbone_norm(const std::string& name) {
  if (name == "batch") return NormKind::kBatchNorm;
  if (name == "group") return NormKind::kGroupNorm;
  return NormKind::kFrozenBatchNorm;
}

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

MaskPaste mask_paste_named(const std::string& name, const std::string& field) {
  if (name == "torchvision") return MaskPaste::kTorchvision;
  if (name == "aligned") return MaskPaste::kAligned;
  throw ConfigError(field + " must be torchvision or aligned, got '" + name + "'");
}

MaskRcnn load_mask_rcnn(const std::string& weights, const ModelOverrides& overrides) {
  const StateDict state = upgrade_torchvision_keys(read_state_dict(weights));
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
  if (overrides.min_size) options.transform.min_size = {*overrides.min_size};
  if (overrides.max_size) options.transform.max_size = *overrides.max_size;
  if (overrides.score_thresh) options.roi_heads.score_thresh = *overrides.score_thresh;
  if (overrides.mask_paste) options.mask_paste = *overrides.mask_paste;
  MaskRcnn model(options);
  load_state_dict(*model, state, weights);
  model->eval();
  return model;
}

MaskRcnn build_mask_rcnn_for_training(const ModelConfig& config, int64_t num_classes) {
  MaskRcnnOptions options = config.variant == "v2" ? MaskRcnnOptions::v2() : MaskRcnnOptions::v1();
  options.num_classes = static_cast<int>(num_classes);
  options.backbone.depth = config.depth;
  options.backbone.norm = backbone_norm(config.norm);
  options.backbone.trainable_layers = config.trainable_layers;
  options.transform.min_size.assign(config.min_sizes.begin(), config.min_sizes.end());
  options.transform.max_size = config.max_size;
  options.rpn.post_nms_top_n_train = config.rpn_post_nms_top_n_train;
  options.rpn.post_nms_top_n_test = config.rpn_post_nms_top_n_test;
  options.roi_heads.batch_size_per_image = config.box_batch_size_per_image;
  options.roi_heads.detections_per_img = config.detections_per_image;
  options.backbone.out_channels = config.fpn_channels;
  options.roi_heads.representation_size = config.box_representation_size;
  options.roi_heads.mask_channels = config.mask_head_channels;
  options.mask_paste = mask_paste_named(config.mask_paste, "model.mask_paste");
  MaskRcnn model(options);
  if (!config.weights.empty()) initialise_from(*model, config.weights);
  return model;
}

}  // namespace instseg
