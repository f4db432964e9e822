#include "instseg/modeling/roi_heads/roi_heads.h"

#include <torch/torch.h>

#include <tuple>

#include "instseg/common/stage_profile.h"
#include "instseg/errors.h"
#include "instseg/ops/box_coder.h"
#include "instseg/ops/box_ops.h"
#include "instseg/ops/nms.h"
#include "modeling/option_error.h"
#include "modeling/roi_heads/fused_roi_heads.h"

namespace instseg {
namespace {

void require(bool ok, const char* field, const std::string& rule, double value) {
  detail::require_option(ok, std::string("roi_heads.") + field, rule, value);
}

std::vector<int64_t> counts(const std::vector<torch::Tensor>& per_image) {
  std::vector<int64_t> n;
  for (const auto& t : per_image) n.push_back(t.size(0));
  return n;
}

constexpr int64_t kBoxPoolSize = 7;   // torchvision's box_roi_pool output
constexpr int64_t kMaskPoolSize = 14;  // torchvision's mask_roi_pool output (masks are twice this)
constexpr double kMinDetectionSize = 1e-2;  // px; torchvision drops smaller detections

}  // namespace

void RoiHeadsOptions::validate() const {
  require(score_thresh >= 0 && score_thresh < 1, "score_thresh", "in [0, 1)", score_thresh);
  require(nms_thresh > 0 && nms_thresh <= 1, "nms_thresh", "in (0, 1]", nms_thresh);
  require(detections_per_img > 0, "detections_per_img", "positive", detections_per_img);
  require(fg_iou_thresh >= 0 && fg_iou_thresh <= 1, "fg_iou_thresh", "in [0, 1]", fg_iou_thresh);
  require(bg_iou_thresh >= 0 && bg_iou_thresh <= fg_iou_thresh, "bg_iou_thresh",
          "in [0, fg_iou_thresh]", bg_iou_thresh);
  require(representation_size > 0, "representation_size", "positive", representation_size);
  require(mask_channels > 0 && (head_norm != NormKind::kGroupNorm || mask_channels % 32 == 0),
          "mask_channels", "positive (a multiple of 32 with group norm)", mask_channels);
  require(batch_size_per_image > 0, "batch_size_per_image", "positive", batch_size_per_image);
  require(positive_fraction > 0 && positive_fraction <= 1, "positive_fraction", "in (0, 1]",
          positive_fraction);
  for (const double w : bbox_reg_weights) {
    require(w > 0, "bbox_reg_weights", "positive", w);
  }
}

std::vector<DetectionSteps> detection_steps(const torch::Tensor& class_logits,
                                            const torch::Tensor& box_deltas,
                                            const std::vector<torch::Tensor>& proposals,
                                            const std::vector<std::array<int64_t, 2>>& image_sizes,
                                            const RoiHeadsOptions& options) {
  TORCH_CHECK(proposals.size() == image_sizes.size(), "postprocess_detections: ",
              proposals.size(), " proposal lists for ", image_sizes.size(), " images");
  const int64_t num_classes = class_logits.size(-1);
  ops::BoxCoder coder;
  coder.weights = options.bbox_reg_weights;
  const auto all_boxes = coder.decode(box_deltas, torch::cat(proposals));  // [R, C, 4]
  const auto all_scores = torch::softmax(class_logits, -1);                 // [R, C]
  const auto sizes = counts(proposals);
  const auto boxes_per_image = all_boxes.split_with_sizes(sizes);
  const auto scores_per_image = all_scores.split_with_sizes(sizes);

  using torch::indexing::Slice;
  std::vector<DetectionSteps> out;
  for (size_t i = 0; i < proposals.size(); ++i) {
    auto boxes = ops::clip_boxes_to_image(boxes_per_image[i], image_sizes[i][0], image_sizes[i][1]);
    auto scores = scores_per_image[i];
    auto labels = torch::arange(num_classes, class_logits.options().dtype(torch::kLong))
                      .view({1, -1})
                      .expand_as(scores);
    auto from = torch::arange(scores.size(0), class_logits.options().dtype(torch::kLong))
                    .view({-1, 1})
                    .expand_as(scores);
    // One candidate per (proposal, foreground class): [R_i * (C - 1)]
    boxes = boxes.index({Slice(), Slice(1)}).reshape({-1, 4});
    scores = scores.index({Slice(), Slice(1)}).reshape(-1);
    labels = labels.index({Slice(), Slice(1)}).reshape(-1);
    from = from.index({Slice(), Slice(1)}).reshape(-1);

    auto keep = torch::where(scores > options.score_thresh)[0];
    boxes = boxes.index({keep}), scores = scores.index({keep}), labels = labels.index({keep});
    from = from.index({keep});
    keep = ops::remove_small_boxes(boxes, kMinDetectionSize);
    boxes = boxes.index({keep}), scores = scores.index({keep}), labels = labels.index({keep});
    from = from.index({keep});
    keep = ops::batched_nms(boxes, scores, labels, options.nms_thresh, options.detections_per_img);
    out.push_back({boxes, scores, labels, from, keep});
  }
  return out;
}

std::vector<Detections> postprocess_detections(const torch::Tensor& class_logits,
                                               const torch::Tensor& box_deltas,
                                               const std::vector<torch::Tensor>& proposals,
                                               const std::vector<std::array<int64_t, 2>>& image_sizes,
                                               const RoiHeadsOptions& options) {
  std::vector<Detections> out;
  for (const auto& s : detection_steps(class_logits, box_deltas, proposals, image_sizes, options)) {
    out.push_back({s.boxes.index({s.kept}), s.scores.index({s.kept}), s.labels.index({s.kept}), {}});
  }
  return out;
}

RoiHeadsImpl::RoiHeadsImpl(int64_t in_channels, int64_t num_classes, RoiHeadsOptions options,
                           int64_t feature_levels)
    : options_(options),
      box_roi_pool_(pooled_level_names(feature_levels), kBoxPoolSize),
      mask_roi_pool_(pooled_level_names(feature_levels), kMaskPoolSize) {
  options_.validate();
  box_head = make_box_head(options_.box_head, options_.head_norm, in_channels, kBoxPoolSize,
                           options_.representation_size);
  register_module("box_head", box_head.ptr());
  box_predictor = register_module("box_predictor", FastRcnnPredictor(options_.representation_size, num_classes));
  const int64_t mask_channels = options_.mask_channels;
  mask_head = register_module("mask_head", MaskRcnnHeads(in_channels, std::vector<int64_t>(4, mask_channels), 1,
                                                         options_.head_norm));
  mask_predictor = register_module("mask_predictor", MaskRcnnPredictor(mask_channels, mask_channels, num_classes));
}

void RoiHeadsImpl::set_linear_kernel(ops::LinearKernel kernel) {
  if (auto* head = box_head.ptr()->as<TwoMlpHead>()) head->linear_kernel = kernel;
  if (auto* head = box_head.ptr()->as<ConvFcHead>()) head->linear_kernel = kernel;
  box_predictor->linear_kernel = kernel;
}

std::pair<torch::Tensor, torch::Tensor> RoiHeadsImpl::predict_boxes(
    const FeatureMaps& features, const std::vector<torch::Tensor>& proposals,
    const std::vector<std::array<int64_t, 2>>& image_sizes) {
  return predict_boxes_timed(features, proposals, image_sizes, nullptr);
}

std::pair<torch::Tensor, torch::Tensor> RoiHeadsImpl::predict_boxes_timed(
    const FeatureMaps& features, const std::vector<torch::Tensor>& proposals,
    const std::vector<std::array<int64_t, 2>>& image_sizes, StageProfile* profile) {
  StageTimer pool_timer(profile, "box.roi_align");
  const auto pooled = box_roi_pool_.forward(features, proposals, image_sizes);  // [R, C, 7, 7]
  pool_timer.stop();
  StageTimer head_timer(profile, "box.head");
  if (fused_ && !is_training()) return fused_->predict_boxes(pooled);
  return box_predictor(box_head.forward(pooled));
}

void RoiHeadsImpl::prepare_inference(ops::InferencePrecision precision) {
  fused_ = FusedRoiHeads::build(*this, precision);
}

torch::Tensor RoiHeadsImpl::predict_mask_logits(const FeatureMaps& features,
                                                const std::vector<torch::Tensor>& boxes,
                                                const std::vector<std::array<int64_t, 2>>& image_sizes) {
  const auto pooled = mask_roi_pool_.forward(features, boxes, image_sizes);  // [K, C, 14, 14]
  return mask_predictor(mask_head(pooled));                                  // [K, classes, 28, 28]
}

std::vector<Detections> RoiHeadsImpl::forward(const FeatureMaps& features,
                                              const std::vector<torch::Tensor>& proposals,
                                              const std::vector<std::array<int64_t, 2>>& image_sizes,
                                              StageProfile* profile) {
  return inspect(features, proposals, image_sizes, profile).detections;
}

RoiHeadsImpl::Inspection RoiHeadsImpl::inspect(const FeatureMaps& features,
                                               const std::vector<torch::Tensor>& proposals,
                                               const std::vector<std::array<int64_t, 2>>& image_sizes,
                                               StageProfile* profile) {
  Inspection inspection;
  std::tie(inspection.class_logits, inspection.box_deltas) = predict_boxes_timed(features, proposals, image_sizes, profile);
  StageTimer postprocess_timer(profile, "box.postprocess");
  const auto& class_logits = inspection.class_logits;
  inspection.steps = detection_steps(class_logits, inspection.box_deltas, proposals, image_sizes, options_);
  auto& detections = inspection.detections;
  for (const auto& s : inspection.steps) {
    detections.push_back({s.boxes.index({s.kept}), s.scores.index({s.kept}), s.labels.index({s.kept}), {}});
  }

  std::vector<torch::Tensor> boxes, labels;
  for (const auto& d : detections) boxes.push_back(d.boxes), labels.push_back(d.labels);
  const auto all_labels = torch::cat(labels);  // [K]
  postprocess_timer.stop();
  if (profile != nullptr) profile->count("detections", all_labels.size(0));
  const int64_t mask_size = 2 * kMaskPoolSize;
  torch::Tensor probs;                         // [K, 1, 28, 28]
  if (all_labels.numel() == 0) {
    probs = torch::zeros({0, 1, mask_size, mask_size}, class_logits.options());
  } else if (fused_ && !is_training()) {
    StageTimer pool_timer(profile, "mask.roi_align");
    const auto pooled = mask_roi_pool_.forward(features, boxes, image_sizes);  // [K, C, 14, 14]
    pool_timer.stop();
    StageTimer head_timer(profile, "mask.head");
    probs = fused_->predict_mask_logits(pooled, all_labels).sigmoid();
  } else {
    StageTimer pool_timer(profile, "mask.roi_align");
    const auto pooled = mask_roi_pool_.forward(features, boxes, image_sizes);  // [K, C, 14, 14]
    pool_timer.stop();
    StageTimer head_timer(profile, "mask.head");
    const auto head = mask_head(pooled);
    head_timer.stop();
    StageTimer predictor_timer(profile, "mask.predictor");
    const auto logits = mask_predictor(head);  // [K, C, 28, 28]
    // Only the predicted class's mask is kept.
    const auto rows = torch::arange(all_labels.size(0), all_labels.options());
    probs = logits.index({rows, all_labels}).sigmoid().unsqueeze(1);
  }
  const auto per_image = probs.split_with_sizes(counts(boxes));
  for (size_t i = 0; i < detections.size(); ++i) detections[i].masks = per_image[i];
  return inspection;
}

std::map<std::string, torch::Tensor> RoiHeadsImpl::losses(
    const FeatureMaps& features, const std::vector<std::array<int64_t, 2>>& image_sizes,
    const std::vector<RoiSample>& samples, const std::vector<Targets>& targets) {
  TORCH_CHECK(samples.size() == targets.size() && samples.size() == image_sizes.size(),
              "RoiHeads::losses: ", samples.size(), " samples, ", targets.size(), " targets, ",
              image_sizes.size(), " images");
  std::vector<torch::Tensor> proposals, labels, regression_targets;
  for (const auto& s : samples) {
    proposals.push_back(s.proposals);
    labels.push_back(s.labels);
    regression_targets.push_back(s.regression_targets);
  }
  const auto [class_logits, box_deltas] = predict_boxes(features, proposals, image_sizes);
  const auto box = fastrcnn_loss(class_logits, box_deltas, torch::cat(labels), torch::cat(regression_targets));

  // The mask branch learns from the foreground proposals only.
  std::vector<torch::Tensor> mask_boxes, mask_matched, gt_masks, gt_labels;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto positive = torch::where(samples[i].labels > 0)[0];
    mask_boxes.push_back(samples[i].proposals.index({positive}));
    mask_matched.push_back(samples[i].matched_idxs.index({positive}));
    gt_masks.push_back(targets[i].masks);
    gt_labels.push_back(targets[i].labels);
  }
  const auto mask_logits = predict_mask_logits(features, mask_boxes, image_sizes);  // [P, C, 28, 28]
  return {{"loss_classifier", box.classifier},
          {"loss_box_reg", box.box_reg},
          {"loss_mask", maskrcnn_loss(mask_logits, mask_boxes, gt_masks, gt_labels, mask_matched)}};
}

}  // namespace instseg
