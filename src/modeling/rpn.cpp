#include "instseg/modeling/rpn.h"

#include <torch/torch.h>

#include <algorithm>
#include <string>

#include "instseg/common/stage_profile.h"
#include "instseg/errors.h"
#include "instseg/modeling/layers/conv_norm_act.h"
#include "instseg/ops/box_coder.h"
#include "instseg/ops/box_ops.h"
#include "instseg/ops/nms.h"
#include "modeling/layers/fold.h"
#include "modeling/option_error.h"

namespace instseg {
namespace {

namespace nn = torch::nn;

void require(bool ok, const std::string& field, const std::string& rule, double value) {
  detail::require_option(ok, "rpn." + field, rule, value);
}

// Validates before the matcher and sampler see the thresholds, so errors name the rpn.* field.
const RpnOptions& validated(const RpnOptions& options) {
  options.validate();
  return options;
}

// [N, A * C, H, W] -> [N, H * W * A, C], the anchors' order.
torch::Tensor permute_and_flatten(const torch::Tensor& x, int64_t channels) {
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  return x.view({n, -1, channels, h, w}).permute({0, 3, 4, 1, 2}).reshape({n, -1, channels});
}

}  // namespace

void RpnOptions::validate() const {
  require(pre_nms_top_n_train > 0, "pre_nms_top_n_train", "positive", pre_nms_top_n_train);
  require(pre_nms_top_n_test > 0, "pre_nms_top_n_test", "positive", pre_nms_top_n_test);
  require(post_nms_top_n_train > 0, "post_nms_top_n_train", "positive", post_nms_top_n_train);
  require(post_nms_top_n_test > 0, "post_nms_top_n_test", "positive", post_nms_top_n_test);
  require(nms_thresh > 0 && nms_thresh <= 1, "nms_thresh", "in (0, 1]", nms_thresh);
  require(score_thresh >= 0 && score_thresh < 1, "score_thresh", "in [0, 1)", score_thresh);
  require(min_size >= 0, "min_size", ">= 0", min_size);
  require(bg_iou_thresh >= 0 && bg_iou_thresh <= 1, "bg_iou_thresh", "in [0, 1]", bg_iou_thresh);
  require(fg_iou_thresh >= bg_iou_thresh && fg_iou_thresh <= 1, "fg_iou_thresh",
          "in [bg_iou_thresh, 1]", fg_iou_thresh);
  require(batch_size_per_image > 0, "batch_size_per_image", "positive", batch_size_per_image);
  require(positive_fraction >= 0 && positive_fraction <= 1, "positive_fraction", "in [0, 1]",
          positive_fraction);
  require(conv_depth >= 1, "conv_depth", ">= 1", conv_depth);
}

RpnHeadImpl::RpnHeadImpl(int64_t in_channels, int64_t num_anchors, int conv_depth) {
  conv = register_module("conv", nn::Sequential());
  // torchvision's conv."i" is itself a block ("0" conv3x3 with bias, "1" ReLU); every conv is
  // re-initialised below, after the 1x1 layers are built, as torchvision.
  for (int i = 0; i < conv_depth; ++i) {
    conv->push_back(ConvNormAct(ConvNormActOptions(in_channels, in_channels, 3)));
  }
  cls_logits = register_module("cls_logits", nn::Conv2d(nn::Conv2dOptions(in_channels, num_anchors, 1)));
  bbox_pred = register_module("bbox_pred", nn::Conv2d(nn::Conv2dOptions(in_channels, 4 * num_anchors, 1)));
  // torchvision's initialisation: small weights so initial proposals are the anchors themselves.
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      nn::init::normal_(c->weight, 0.0, 0.01);
      nn::init::zeros_(c->bias);
    }
  }
}

struct FusedRpnHead {
  std::vector<ops::FusedConv2d> convs;
  ops::FusedConv2d out;  // cls_logits' then bbox_pred's output channels, one 1x1 convolution
  int64_t anchors = 0;
};

void RpnHeadImpl::prepare_inference(ops::InferencePrecision precision) {
  auto fused = std::make_shared<FusedRpnHead>();
  for (const auto& child : conv->children()) {
    auto c = detail::fuse_block(*child->as<ConvNormActImpl>(), precision, /*float_output=*/false);
    if (!c.defined()) return drop_prepared_inference();
    fused->convs.push_back(c);
  }
  ops::FusedConvOptions out;
  out.precision = precision;
  out.float_output = true;  // proposals are decoded from these in fp32
  torch::NoGradGuard no_grad;
  fused->out = ops::FusedConv2d(torch::cat({cls_logits->weight, bbox_pred->weight}).to(torch::kFloat),
                                torch::cat({cls_logits->bias, bbox_pred->bias}).to(torch::kFloat), out);
  fused->anchors = cls_logits->weight.size(0);
  fused_ = std::move(fused);
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> RpnHeadImpl::forward(
    const std::vector<torch::Tensor>& features) {
  std::vector<torch::Tensor> objectness, deltas;
  if (fused_ && !is_training()) {
    const int64_t a = fused_->anchors;
    for (const auto& feature : features) {
      auto t = feature;
      for (const auto& c : fused_->convs) t = c.forward(t);
      const auto out = fused_->out.forward(t);  // [N, 5A, H_l, W_l] channels-last
      objectness.push_back(out.narrow(1, 0, a));
      deltas.push_back(out.narrow(1, a, 4 * a));
    }
    return {objectness, deltas};
  }
  for (const auto& feature : features) {
    const auto t = conv->forward(feature);  // [N, C, H_l, W_l]
    // In the parameters' precision: proposals are decoded from these (ops/mixed_precision.h).
    objectness.push_back(cls_logits(t).to(cls_logits->weight.scalar_type()));
    deltas.push_back(bbox_pred(t).to(bbox_pred->weight.scalar_type()));
  }
  return {objectness, deltas};
}

RpnPredictions flatten_rpn_outputs(const std::vector<torch::Tensor>& objectness,
                                   const std::vector<torch::Tensor>& deltas) {
  RpnPredictions out;
  std::vector<torch::Tensor> logits, regressions;
  for (size_t l = 0; l < objectness.size(); ++l) {
    const auto& o = objectness[l];  // [N, A, H, W]
    out.anchors_per_level.push_back(o.size(1) * o.size(2) * o.size(3));
    logits.push_back(permute_and_flatten(o, 1));            // [N, H * W * A, 1]
    regressions.push_back(permute_and_flatten(deltas[l], 4));  // [N, H * W * A, 4]
  }
  out.objectness = torch::cat(logits, 1).squeeze(2);  // [N, T]
  out.deltas = torch::cat(regressions, 1);            // [N, T, 4]
  return out;
}

RpnLosses rpn_losses(const torch::Tensor& objectness, const torch::Tensor& deltas,
                     const torch::Tensor& labels, const torch::Tensor& regression_targets,
                     const torch::Tensor& sampled_pos, const torch::Tensor& sampled_neg) {
  const auto sampled = torch::cat({sampled_pos, sampled_neg});  // [P + Q]
  // Normalised by all sampled anchors, not only positives, as torchvision.
  const auto box_reg =
      torch::smooth_l1_loss(deltas.index_select(0, sampled_pos),
                            regression_targets.index_select(0, sampled_pos), at::Reduction::Sum,
                            /*beta=*/1.0 / 9) /
      sampled.numel();
  const auto objectness_loss = torch::binary_cross_entropy_with_logits(
      objectness.flatten().index_select(0, sampled), labels.index_select(0, sampled));
  return {objectness_loss, box_reg};
}

RegionProposalNetworkImpl::RegionProposalNetworkImpl(int64_t in_channels,
                                                     AnchorGeneratorOptions anchors,
                                                     RpnOptions options)
    : options_(validated(options)),
      anchor_generator_(std::move(anchors)),
      matcher_(options.fg_iou_thresh, options.bg_iou_thresh, /*allow_low_quality_matches=*/true),
      sampler_(options.batch_size_per_image, options.positive_fraction) {
  const auto per_location = anchor_generator_.num_anchors_per_location();
  TORCH_CHECK(std::all_of(per_location.begin(), per_location.end(),
                          [&](int64_t a) { return a == per_location.front(); }),
              "RegionProposalNetwork: the shared head needs the same number of anchors on every level");
  head = register_module("head", RpnHead(in_channels, per_location.front(), options_.conv_depth));
}

RegionProposalNetworkImpl::Pass RegionProposalNetworkImpl::run(const ImageList& images,
                                                                const FeatureMaps& features,
                                                                ProposalLimits limits,
                                                                StageProfile* profile) {
  StageTimer head_timer(profile, "rpn.head");
  std::vector<torch::Tensor> levels;
  for (const auto& f : features) levels.push_back(f.tensor);
  auto [objectness, deltas] = head->forward(levels);
  head_timer.stop();
  StageTimer proposals_timer(profile, "rpn.proposals");
  Pass pass;
  pass.predictions = flatten_rpn_outputs(objectness, deltas);
  pass.objectness = std::move(objectness), pass.deltas = std::move(deltas);
  pass.anchors = anchor_generator_.forward(images, features);
  const int64_t num_images = pass.predictions.objectness.size(0);

  // Proposals never carry gradient back into the head (torchvision detaches them).
  const auto decoded = ops::BoxCoder{}
                           .decode(pass.predictions.deltas.detach().reshape({-1, 4}),
                                   torch::cat(pass.anchors))
                           .view({num_images, -1, 4});  // [N, T, 4]
  pass.steps = select_proposal_steps(decoded, pass.predictions.objectness, images.image_sizes,
                                     pass.predictions.anchors_per_level, limits);
  for (const auto& s : pass.steps) pass.proposals.push_back(s.boxes);
  return pass;
}

std::vector<torch::Tensor> RegionProposalNetworkImpl::forward(const ImageList& images,
                                                              const FeatureMaps& features,
                                                              StageProfile* profile) {
  auto proposals = run(images, features, {options_.pre_nms_top_n_test, options_.post_nms_top_n_test}, profile).proposals;
  if (profile != nullptr) {
    for (const auto& p : proposals) profile->count("proposals", p.size(0));
  }
  return proposals;
}

RpnInspection RegionProposalNetworkImpl::inspect(const ImageList& images, const FeatureMaps& features) {
  auto pass = run(images, features, {options_.pre_nms_top_n_test, options_.post_nms_top_n_test});
  return {std::move(pass.objectness), std::move(pass.deltas), std::move(pass.anchors), std::move(pass.steps)};
}

std::pair<torch::Tensor, torch::Tensor> RegionProposalNetworkImpl::assign_targets(
    const torch::Tensor& anchors, const torch::Tensor& gt_boxes) const {
  if (gt_boxes.size(0) == 0) {  // an image without objects: every anchor is background
    return {torch::zeros({anchors.size(0)}, anchors.options()), torch::zeros_like(anchors)};
  }
  const auto matched = matcher_(ops::box_iou(gt_boxes, anchors));  // [T] int64
  const auto matched_boxes = gt_boxes.index_select(0, matched.clamp_min(0));
  auto labels = (matched >= 0).to(anchors.scalar_type());
  labels.masked_fill_(matched == Matcher::kBelowLowThreshold, 0.0);
  labels.masked_fill_(matched == Matcher::kBetweenThresholds, -1.0);
  return {labels, matched_boxes};
}

RpnTrainOutput RegionProposalNetworkImpl::forward_train(const ImageList& images,
                                                        const FeatureMaps& features,
                                                        const std::vector<torch::Tensor>& gt_boxes,
                                                        std::optional<at::Generator> generator) {
  auto pass = run(images, features, {options_.pre_nms_top_n_train, options_.post_nms_top_n_train});
  TORCH_CHECK(gt_boxes.size() == pass.anchors.size(), "RegionProposalNetwork: ", gt_boxes.size(),
              " ground-truth sets for ", pass.anchors.size(), " images");
  std::vector<torch::Tensor> labels, targets, sampler_input;
  const ops::BoxCoder coder;
  for (size_t i = 0; i < gt_boxes.size(); ++i) {
    auto [l, boxes] = assign_targets(pass.anchors[i], gt_boxes[i]);
    targets.push_back(coder.encode(boxes, pass.anchors[i]));  // [T, 4]
    sampler_input.push_back(l.to(torch::kInt64));            // 1 fg, 0 bg, -1 ignored
    labels.push_back(std::move(l));
  }
  const auto [pos_masks, neg_masks] = sampler_(sampler_input, generator);
  const auto sampled_pos = torch::nonzero(torch::cat(pos_masks)).squeeze(1);
  const auto sampled_neg = torch::nonzero(torch::cat(neg_masks)).squeeze(1);
  auto losses = rpn_losses(pass.predictions.objectness, pass.predictions.deltas.reshape({-1, 4}),
                           torch::cat(labels), torch::cat(targets), sampled_pos, sampled_neg);
  return {std::move(pass.proposals), std::move(losses)};
}

std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>>
RegionProposalNetworkImpl::select_proposals(const torch::Tensor& proposals,
                                            const torch::Tensor& objectness,
                                            const std::vector<std::array<int64_t, 2>>& image_sizes,
                                            const std::vector<int64_t>& anchors_per_level,
                                            ProposalLimits limits) const {
  std::vector<torch::Tensor> boxes_out, scores_out;
  for (auto& s : select_proposal_steps(proposals, objectness, image_sizes, anchors_per_level, limits)) {
    boxes_out.push_back(std::move(s.boxes));
    scores_out.push_back(std::move(s.scores));
  }
  return {boxes_out, scores_out};
}

std::vector<ProposalSteps> RegionProposalNetworkImpl::select_proposal_steps(
    const torch::Tensor& proposals, const torch::Tensor& objectness,
    const std::vector<std::array<int64_t, 2>>& image_sizes,
    const std::vector<int64_t>& anchors_per_level, ProposalLimits limits) const {
  const auto logits = objectness.detach();  // [N, T]
  const auto device = logits.device();

  // Per level: the pre_nms_top_n best anchors, with the level id for NMS per level.
  std::vector<torch::Tensor> top_idx, top_level;
  int64_t offset = 0;
  for (size_t l = 0; l < anchors_per_level.size(); ++l) {
    const int64_t count = anchors_per_level[l];
    const auto level_logits = logits.narrow(1, offset, count);  // [N, count]
    const int64_t k = std::min(limits.pre_nms_top_n, count);
    top_idx.push_back(std::get<1>(level_logits.topk(k, 1)) + offset);  // [N, k]
    top_level.push_back(torch::full({k}, static_cast<int64_t>(l),
                                    torch::TensorOptions().dtype(torch::kInt64).device(device)));
    offset += count;
  }
  const auto idx = torch::cat(top_idx, 1);   // [N, K]
  const auto level = torch::cat(top_level);  // [K]

  std::vector<ProposalSteps> out;
  for (int64_t i = 0; i < logits.size(0); ++i) {
    ProposalSteps steps;
    steps.candidate_anchors = idx[i];
    steps.candidate_levels = level;
    steps.candidate_scores = torch::sigmoid(logits[i].index_select(0, idx[i]));  // [K]
    steps.candidate_boxes = ops::clip_boxes_to_image(proposals[i].index_select(0, idx[i]),  // [K, 4]
                                                     image_sizes[i][0], image_sizes[i][1]);
    // `from` maps the surviving boxes back to the candidates.
    auto boxes = steps.candidate_boxes, scores = steps.candidate_scores, lvl = level;
    auto from = torch::arange(boxes.size(0), torch::TensorOptions().dtype(torch::kInt64).device(device));

    auto keep = ops::remove_small_boxes(boxes, options_.min_size);
    boxes = boxes.index_select(0, keep), scores = scores.index_select(0, keep), lvl = lvl.index_select(0, keep);
    from = from.index_select(0, keep);

    keep = torch::nonzero(scores >= options_.score_thresh).squeeze(1);
    boxes = boxes.index_select(0, keep), scores = scores.index_select(0, keep), lvl = lvl.index_select(0, keep);
    from = from.index_select(0, keep);

    keep = ops::batched_nms(boxes, scores, lvl, options_.nms_thresh, limits.post_nms_top_n);
    steps.kept = from.index_select(0, keep);
    steps.boxes = boxes.index_select(0, keep);
    steps.scores = scores.index_select(0, keep);
    out.push_back(std::move(steps));
  }
  return out;
}

}  // namespace instseg
