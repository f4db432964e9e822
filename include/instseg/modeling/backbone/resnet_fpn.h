#pragma once
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <memory>
#include <vector>

#include "instseg/modeling/backbone/fpn.h"
#include "instseg/modeling/layers/norm.h"
#include "instseg/modeling/backbone/resnet.h"
#include "instseg/ops/fused_conv.h"
#include "instseg/structures/image_list.h"

namespace instseg {

struct StageProfile;
class FusedResnetFpn;

struct BackboneOptions {
  int depth = 50;                              // ResNet depth: 18, 34, 50, 101
  NormKind norm = NormKind::kFrozenBatchNorm;  // ResNet norm (group norm: training from scratch)
  int trainable_layers = 3;     // torchvision's trainable_backbone_layers: layer4..layer2 train
  NormKind fpn_norm = NormKind::kNone;  // kNone for v1, kBatchNorm for v2 (set by the variant)
  int64_t out_channels = 256;   // FPN channels, shared by every level
  // The ResNet stages whose outputs feed the FPN, increasing (torchvision's returned_layers). The
  // body ends at the last one: with {1, 2, 3} there is no layer4 (nor its keys), the FPN has
  // levels "0".."2" and "pool", and anchors.sizes needs one entry per level (4).
  std::vector<int> returned_layers{1, 2, 3, 4};
  void validate() const;        // throws ConfigError naming the backbone.* field
  // FPN levels before "pool": one per returned layer.
  int64_t levels() const { return static_cast<int64_t>(returned_layers.size()); }
};

// ResNet body + FPN (torchvision's BackboneWithFPN over the returned layers with
// LastLevelMaxPool). Children `body` and `fpn` match torchvision's "backbone.body.*" /
// "backbone.fpn.*" keys.
class ResnetFpnImpl : public torch::nn::Module {
 public:
  explicit ResnetFpnImpl(BackboneOptions options);

  // images: [N, 3, H, W] (H, W multiples of 32) -> "0".."3" at strides 4..32 and "pool" at 64,
  // each [N, out_channels, H / stride, W / stride] (the default returned_layers; with {1, 2, 3}:
  // "0".."2" and "pool" at 32).
  // With `profile`, adds the body's and the FPN's times (backbone.body, backbone.fpn).
  FeatureMaps forward(const torch::Tensor& images, StageProfile* profile = nullptr);

  // The fused form (MaskRcnn::prepare_inference): forward() runs it outside training. A body with
  // group norm cannot be folded and keeps its module code.
  void prepare_inference(ops::InferencePrecision precision);
  void drop_prepared_inference() { fused_.reset(); }

  int64_t out_channels() const { return options_.out_channels; }
  const BackboneOptions& options() const { return options_; }

  ResNet body{nullptr};
  FeaturePyramidNetwork fpn{nullptr};

 private:
  BackboneOptions options_;
  std::shared_ptr<const FusedResnetFpn> fused_;
};
TORCH_MODULE(ResnetFpn);

}  // namespace instseg
