#include "instseg/modeling/backbone/resnet_fpn.h"

#include <torch/torch.h>

#include <string>
#include <vector>

#include "instseg/common/stage_profile.h"
#include "instseg/errors.h"
#include "modeling/backbone/fused_resnet_fpn.h"

namespace instseg {

void BackboneOptions::validate() const {
  ResNetOptions{depth, norm}.validate();
  bool increasing = !returned_layers.empty();
  for (size_t i = 0; i < returned_layers.size(); ++i) {
    increasing = increasing && returned_layers[i] >= 1 && returned_layers[i] <= 4 &&
                 (i == 0 || returned_layers[i] > returned_layers[i - 1]);
  }
  if (!increasing) {
    std::string got;
    for (const int l : returned_layers) got += (got.empty() ? "" : ", ") + std::to_string(l);
    throw ConfigError("backbone.returned_layers must list ResNet stages 1..4 in increasing order, got [" + got + "]");
  }
  if (trainable_layers < 0 || trainable_layers > 5) {
    throw ConfigError("backbone.trainable_layers must be in [0, 5], got " +
                      std::to_string(trainable_layers));
  }
  if (fpn_norm == NormKind::kFrozenBatchNorm) {
    throw ConfigError("backbone.fpn_norm must be none, batch_norm or group_norm, got " +
                      to_string(fpn_norm));
  }
  if (out_channels <= 0 || (fpn_norm == NormKind::kGroupNorm && out_channels % 32 != 0)) {
    throw ConfigError("backbone.out_channels must be positive (a multiple of 32 with group norm), "
                      "got " + std::to_string(out_channels));
  }
}

ResnetFpnImpl::ResnetFpnImpl(BackboneOptions options) : options_(options) {
  options_.validate();
  body = register_module("body", ResNet(ResNetOptions{options_.depth, options_.norm, options_.returned_layers.back()}));
  const auto stage_channels = body->out_channels();
  std::vector<int64_t> in_channels;
  for (const int l : options_.returned_layers) in_channels.push_back(stage_channels[l - 1]);
  fpn = register_module("fpn", FeaturePyramidNetwork(in_channels, options_.out_channels, options_.fpn_norm));

  // Freeze the stem and the first stages, as torchvision: the stages trained last, in order.
  std::vector<std::string> trained = {"layer4", "layer3", "layer2", "layer1", "conv1"};
  trained.resize(options_.trainable_layers);
  if (options_.trainable_layers == 5) trained.push_back("bn1");
  for (auto& item : body->named_parameters()) {
    bool train = false;
    for (const auto& prefix : trained) train = train || item.key().rfind(prefix, 0) == 0;
    if (!train) item.value().set_requires_grad(false);
  }
}

FeatureMaps ResnetFpnImpl::forward(const torch::Tensor& images, StageProfile* profile) {
  if (fused_ && !is_training()) return fused_->forward(images, profile);
  StageTimer body_timer(profile, "backbone.body");
  auto stages = body->forward(images);
  std::vector<torch::Tensor> levels;
  for (const int l : options_.returned_layers) levels.push_back(std::move(stages[l - 1]));
  body_timer.stop();
  StageTimer fpn_timer(profile, "backbone.fpn");
  return fpn->forward(levels);
}

void ResnetFpnImpl::prepare_inference(ops::InferencePrecision precision) {
  fused_ = FusedResnetFpn::build(*this, precision);
}

}  // namespace instseg
