#pragma once
// Mask R-CNN (torchvision's maskrcnn_resnet50_fpn v1 and maskrcnn_resnet50_fpn_v2), composed from
// its stages. This file only wires stages together; each stage owns its maths in its own file.
#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "instseg/modeling/anchor_generator.h"
#include "instseg/modeling/backbone/resnet_fpn.h"
#include "instseg/modeling/roi_heads/paste_masks.h"
#include "instseg/modeling/roi_heads/roi_heads.h"
#include "instseg/modeling/rpn.h"
#include "instseg/modeling/transform.h"
#include "instseg/ops/fused_conv.h"
#include "instseg/structures/detections.h"

namespace instseg {

struct StageProfile;

// The whole description of a model: architecture, input size and inference settings. A default
// constructed MaskRcnnOptions is v1(); the presets only choose values, so a field set after taking
// a preset is what the model gets (nothing is rewritten when the model is built).
struct MaskRcnnOptions {
  // torchvision's maskrcnn_resnet50_fpn: frozen-BN ResNet, plain FPN, 1-conv RPN head, TwoMLPHead
  // box head, plain mask head.
  static MaskRcnnOptions v1();
  // torchvision's maskrcnn_resnet50_fpn_v2: batch norm in the FPN and heads, 2-conv RPN head,
  // 4conv+1fc box head.
  static MaskRcnnOptions v2();

  int num_classes = 91;  // including background; torchvision's COCO models use 91 (COCO ids)
  BackboneOptions backbone;
  TransformOptions transform;
  AnchorGeneratorOptions anchors;
  RpnOptions rpn;
  RoiHeadsOptions roi_heads;
  MaskPaste mask_paste = MaskPaste::kTorchvision;  // inference only (roi_heads/paste_masks.h)
  void validate() const;
};

class MaskRcnnImpl : public torch::nn::Module {
 public:
  explicit MaskRcnnImpl(MaskRcnnOptions options);

  // images: each [3, H, W] float RGB in [0, 1]. Returns detections in each image's own pixels,
  // with the RPN's *_test top-n. Refuses a model in training mode (batch norm would use, and
  // update, the statistics of the images being predicted).
  // With `profile`, each stage's wall time is added to it (common/stage_profile.h names them).
  std::vector<Detections> predict(const std::vector<torch::Tensor>& images, StageProfile* profile = nullptr);

  // As predict, but each image's masks stay [K, 1, M, M] probabilities over their boxes (the boxes
  // in the image's own pixels), to be pasted one at a time with mask_paster(): predict's
  // [K, 1, H, W] costs 4 K bytes per image pixel, a paster's masks only their boxes.
  std::vector<Detections> predict_box_masks(const std::vector<torch::Tensor>& images,
                                            StageProfile* profile = nullptr);

  // Builds predict()'s fused CPU path from the weights as they are now: batch norm folded into
  // the convolutions, oneDNN convolutions and inner products with bias, ReLU and residual adds
  // fused (ops/fused_conv.h), channels-last activations, RoIAlign on channels-last features, the
  // mask logits of the predicted class only. Every stage keeps its own code beside its fused
  // form. Call after loading weights (load_model does); weights changed afterwards are not seen
  // until it is called again, and train(true) drops it. In fp32 predict's results equal the
  // modules' within float rounding (tests/modeling/fused_inference_test.cpp).
  void prepare_inference(ops::InferencePrecision precision = ops::InferencePrecision::kFloat32);
  // Back to the modules' own code (the reference the fused path is checked against).
  void drop_prepared_inference();
  bool inference_prepared() const;
  void train(bool on = true) override;
  // The paster of one image's predict_box_masks() detections, pasting as options().mask_paste.
  MaskPaster mask_paster(const Detections& detections, int64_t height, int64_t width) const;

  // Training losses: torchvision's loss dict (loss_objectness, loss_rpn_box_reg, loss_classifier,
  // loss_box_reg, loss_mask). The entry point decides, not the mode: the RPN keeps its *_train
  // top-n in either mode. The mode only picks what batch norm does: train() updates and uses
  // batch statistics (a training step), eval() uses the running ones (validation losses).
  // Every random draw (each image's min_size, the anchors and proposals sampled for the
  // losses) comes from `generator`, torch's default one when absent (seeding torch then
  // reproduces torchvision's draws); validation passes its own so as not to move training's.
  std::map<std::string, torch::Tensor> losses(const std::vector<torch::Tensor>& images,
                                              const std::vector<Targets>& targets,
                                              std::optional<at::Generator> generator = std::nullopt);
  // Whether losses() lays the image batch out channels-last (NHWC): convolutions then keep that
  // layout through the backbone and heads, their gradients too (and the 4-d weights are stored
  // channels-last, so no step copies them into that layout), and the box head's
  // fully-connected layers run as oneDNN inner products (RoiHeads::set_linear_kernel): the layouts
  // oneDNN computes in natively. 3x3 stride-1 convolutions run oneDNN's Winograd kernels
  // (ResNetImpl::set_fast_training, ConvNormActImpl::set_conv_kernel), and frozen batch norm is
  // folded into the convolution before it. Same numbers within float rounding; which is faster depends on
  // the CPU and precision (engine/step_settings.h measures it). Off by default (torchvision's
  // kernels); not part of the model's description (options()).
  void set_channels_last_training(bool on);
  bool channels_last_training() const { return channels_last_training_; }

  const MaskRcnnOptions& options() const { return options_; }
  // The stages, for code that shows or checks what each computes (instseg explain, tests);
  // predict() and losses() above are the whole model.
  const GeneralizedRcnnTransform& transform() const { return transform_; }
  ResnetFpn& backbone() { return backbone_; }
  RegionProposalNetwork& rpn() { return rpn_; }
  RoiHeads& roi_heads() { return roi_heads_; }

 private:
  MaskRcnnOptions options_;
  GeneralizedRcnnTransform transform_;
  ResnetFpn backbone_{nullptr};
  RegionProposalNetwork rpn_{nullptr};
  RoiHeads roi_heads_{nullptr};
  bool prepared_ = false;
  bool channels_last_training_ = false;
};
TORCH_MODULE(MaskRcnn);

}  // namespace instseg
