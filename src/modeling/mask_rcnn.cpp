// Composition only: transform -> backbone -> RPN -> RoI heads -> back to each image's pixels.
#include "instseg/modeling/mask_rcnn.h"

#include <torch/torch.h>

#include "instseg/common/stage_profile.h"
#include "instseg/errors.h"
#include "instseg/modeling/layers/conv_norm_act.h"
#include "instseg/modeling/roi_heads/paste_masks.h"
#include "instseg/modeling/roi_heads/training_samples.h"

namespace instseg {

MaskRcnnOptions MaskRcnnOptions::v1() { return MaskRcnnOptions{}; }

MaskRcnnOptions MaskRcnnOptions::v2() {
  MaskRcnnOptions o;
  o.backbone.fpn_norm = NormKind::kBatchNorm;
  o.rpn.conv_depth = 2;
  o.roi_heads.box_head = BoxHeadKind::kConvFc;
  o.roi_heads.head_norm = NormKind::kBatchNorm;
  return o;
}

void MaskRcnnOptions::validate() const {
  if (num_classes < 2) {
    throw ConfigError("num_classes must be >= 2 (background + at least one class), got " +
                      std::to_string(num_classes));
  }
  backbone.validate();
  transform.validate();
  anchors.validate();
  rpn.validate();
  roi_heads.validate();
  // One anchor level per FPN map: the returned layers' and "pool".
  if (static_cast<int64_t>(anchors.sizes.size()) != backbone.levels() + 1) {
    throw ConfigError("anchors.sizes has " + std::to_string(anchors.sizes.size()) + " levels; the backbone's " +
                      std::to_string(backbone.levels()) + " returned_layers and \"pool\" make " +
                      std::to_string(backbone.levels() + 1) + " feature maps, one anchor level each");
  }
  // The box head's convolutions are as wide as the FPN (box_head.h).
  if (roi_heads.head_norm == NormKind::kGroupNorm && roi_heads.box_head == BoxHeadKind::kConvFc &&
      backbone.out_channels % 32 != 0) {
    throw ConfigError("roi_heads.head_norm group_norm with box_head conv_fc needs backbone.out_channels "
                      "a multiple of 32, got " + std::to_string(backbone.out_channels));
  }
}

MaskRcnnImpl::MaskRcnnImpl(MaskRcnnOptions options)
    : options_(std::move(options)), transform_(options_.transform) {
  options_.validate();
  backbone_ = register_module("backbone", ResnetFpn(options_.backbone));
  const int64_t channels = backbone_->out_channels();
  rpn_ = register_module("rpn", RegionProposalNetwork(channels, options_.anchors, options_.rpn));
  roi_heads_ = register_module("roi_heads",
                               RoiHeads(channels, options_.num_classes, options_.roi_heads, options_.backbone.levels()));
}

std::vector<Detections> MaskRcnnImpl::predict(const std::vector<torch::Tensor>& images, StageProfile* profile) {
  auto detections = predict_box_masks(images, profile);
  StageTimer paste_timer(profile, "paste");
  for (size_t i = 0; i < detections.size(); ++i) {
    auto& d = detections[i];
    const int64_t height = images[i].size(1), width = images[i].size(2);
    d.masks = options_.mask_paste == MaskPaste::kAligned ? paste_masks_aligned(d.masks, d.boxes, height, width)
                                                         : paste_masks_in_image(d.masks, d.boxes, height, width);
  }
  return detections;
}

std::vector<Detections> MaskRcnnImpl::predict_box_masks(const std::vector<torch::Tensor>& images,
                                                        StageProfile* profile) {
  TORCH_CHECK(!is_training(), "MaskRcnn::predict: the model is in training mode; call eval()");
  torch::NoGradGuard no_grad;
  StageTimer transform_timer(profile, "transform");
  const auto batch = transform_.forward(images);
  transform_timer.stop();
  const auto features = backbone_->forward(batch.tensors, profile);
  const auto proposals = rpn_->forward(batch, features, profile);
  auto detections = roi_heads_->forward(features, proposals, batch.image_sizes, profile);
  for (size_t i = 0; i < detections.size(); ++i) {
    const std::array<int64_t, 2> original{images[i].size(1), images[i].size(2)};
    detections[i].boxes = resize_boxes(detections[i].boxes, batch.image_sizes[i], original);
  }
  return detections;
}

void MaskRcnnImpl::prepare_inference(ops::InferencePrecision precision) {
  backbone_->prepare_inference(precision);
  rpn_->head->prepare_inference(precision);
  roi_heads_->prepare_inference(precision);
  prepared_ = true;
}

void MaskRcnnImpl::drop_prepared_inference() {
  backbone_->drop_prepared_inference();
  rpn_->head->drop_prepared_inference();
  roi_heads_->drop_prepared_inference();
  prepared_ = false;
}

bool MaskRcnnImpl::inference_prepared() const { return prepared_; }

void MaskRcnnImpl::train(bool on) {
  // The fused path holds copies of the weights: training would leave it stale.
  if (on && prepared_) drop_prepared_inference();
  torch::nn::Module::train(on);
}

MaskPaster MaskRcnnImpl::mask_paster(const Detections& detections, int64_t height, int64_t width) const {
  return MaskPaster(detections.masks, detections.boxes, height, width, options_.mask_paste);
}

void MaskRcnnImpl::set_channels_last_training(bool on) {
  channels_last_training_ = on;
  // Convolution weights in the activations' layout: LibTorch's oneDNN convolutions otherwise copy
  // each weight into channels-last twice per step (forward and backward), and autograd copies each
  // gradient back into the weight's layout. The values do not change.
  {
    torch::NoGradGuard no_grad;
    const auto format = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    for (auto& p : parameters()) {
      if (p.dim() == 4 && !p.is_contiguous(format)) p.set_data(p.contiguous(format));
    }
  }
  backbone_->body->set_fast_training(on);
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* block = module->as<ConvNormActImpl>()) {
      block->set_conv_kernel(on ? ops::ConvKernel::kWinograd : ops::ConvKernel::kLibTorch);
    }
  }
  roi_heads_->set_linear_kernel(on ? ops::LinearKernel::kOneDnn : ops::LinearKernel::kLibTorch);
}

std::map<std::string, torch::Tensor> MaskRcnnImpl::losses(const std::vector<torch::Tensor>& images,
                                                         const std::vector<Targets>& targets,
                                                         std::optional<at::Generator> generator) {
  const auto [batch, resized_targets] = transform_.forward_train(images, targets, generator);
  const auto features = backbone_(channels_last_training_ ? batch.tensors.contiguous(at::MemoryFormat::ChannelsLast)
                                                           : batch.tensors);
  std::vector<torch::Tensor> gt_boxes;
  for (const auto& t : resized_targets) gt_boxes.push_back(t.boxes);
  const auto rpn = rpn_->forward_train(batch, features, gt_boxes, generator);
  const auto samples = select_training_samples(rpn.proposals, resized_targets, options_.roi_heads, generator);
  auto losses = roi_heads_->losses(features, batch.image_sizes, samples, resized_targets);
  losses["loss_objectness"] = rpn.losses.objectness;
  losses["loss_rpn_box_reg"] = rpn.losses.box_reg;
  return losses;
}

}  // namespace instseg
