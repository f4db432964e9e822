// explain's inference view. The stages run here are the model's own (transform, backbone,
// RegionProposalNetwork::inspect, RoiHeads::inspect, the box pooler, the mask paster), composed as
// MaskRcnn::predict_box_masks composes them, so every number shown is what predict computes.
#include "inference_view.h"

#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "drawing.h"
#include "inference_points.h"
#include "instseg/errors.h"
#include "instseg/io/overlay.h"
#include "instseg/modeling/roi_heads/poolers.h"
#include "instseg/ops/box_ops.h"

namespace instseg::explain {

namespace {

using json = nlohmann::json;
using namespace infer;  // the RoIAlign grid of inference_points.h

// The box pooler's 7x7 bins take 2x2 samples each (RoiHeads' MultiScaleRoiAlign).
constexpr int64_t kSamplingRatio = 2;
constexpr double kCanonicalScale = 224, kCanonicalLevel = 4;  // map_box_levels' defaults

// Everything the model computes on the image, kept stage by stage.
struct Stages {
  ImageList batch;
  FeatureMaps features;
  RpnInspection rpn;
  RoiHeadsImpl::Inspection heads;
  std::array<int64_t, 2> size{};      // resized (height, width)
  std::array<int64_t, 2> original{};  // the file's (height, width)
};

Stages run_stages(MaskRcnn& model, const torch::Tensor& image) {
  torch::NoGradGuard no_grad;
  Stages s;
  s.batch = model->transform().forward({image});
  s.features = model->backbone()(s.batch.tensors);
  s.rpn = model->rpn()->inspect(s.batch, s.features);
  s.heads = model->roi_heads()->inspect(s.features, {s.rpn.steps[0].boxes}, s.batch.image_sizes);
  s.size = s.batch.image_sizes[0];
  s.original = {image.size(1), image.size(2)};
  return s;
}

json box_json(const torch::Tensor& box) {
  const auto b = box.to(torch::kFloat).contiguous();
  const float* p = b.data_ptr<float>();
  return json::array({p[0], p[1], p[2], p[3]});
}

std::string fixed(double v, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << v;
  return out.str();
}

std::string class_name(const ExplainInput& input, int64_t label) {
  if (label >= 0 && label < int64_t(input.class_names.size()) && !input.class_names[label].empty()) {
    return input.class_names[label];
  }
  return "class " + std::to_string(label);
}

// Indices of `scores` by decreasing score.
std::vector<int64_t> by_score(const torch::Tensor& scores) {
  const auto order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
  return std::vector<int64_t>(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + order.numel());
}

cv::Mat nothing_to_show(const std::string& why) {
  cv::Mat picture(80, 520, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(picture, why, cv::Point(10, 45), cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  return picture;
}

class InferenceView {
 public:
  InferenceView(const ExplainInput& input, FigureWriter& writer) : input_(input), writer_(writer) {
    if (!input.has_weights) throw InputError("explain: the inference view needs --weights");
    model_ = input.model;
    stages_ = run_stages(model_, input.image);
    const auto& t = model_->transform().options();
    padded_ = denormalized_bgr(stages_.batch.tensors[0], t.image_mean, t.image_std);
    resized_ = padded_(cv::Rect(0, 0, int(stages_.size[1]), int(stages_.size[0]))).clone();
    for (const auto& f : stages_.features) level_names_.push_back(f.name);
    // The box pooler's level range, from the maps' scales as MultiScaleRoiAlign finds them.
    pooled_levels_ = pooled_level_names(model_->options().backbone.levels());
    for (const auto& name : pooled_levels_) pool_scales_.push_back(infer_feature_scale(feature_size(name), stages_.size));
    k_min_ = std::lround(-std::log2(pool_scales_.front()));
    k_max_ = std::lround(-std::log2(pool_scales_.back()));
  }

  void write_all() {
    input_figure();
    fpn_features();
    rpn_objectness();
    proposals_before_nms();
    proposals_after_nms();
    roi_levels();
    roi_align_points();
    boxes_before_nms();
    detections();
    mask_probabilities();
    masks_pasted();
  }

 private:
  std::array<int64_t, 2> feature_size(const std::string& name) const {
    for (const auto& f : stages_.features) {
      if (f.name == name) return {f.tensor.size(2), f.tensor.size(3)};
    }
    throw InputError("explain: the backbone has no feature map \"" + name + "\"");
  }
  // Padded size over map size per axis, as the anchor generator finds the strides ("pool" of a
  // 96x128 input is 2x2: strides 48 and 64).
  std::array<int64_t, 2> strides(size_t level) const {
    const auto& f = stages_.features[level].tensor;
    return {stages_.batch.tensors.size(2) / f.size(2), stages_.batch.tensors.size(3) / f.size(3)};
  }
  json stride_json(size_t level) const { return {strides(level)[0], strides(level)[1]}; }
  std::string level_label(size_t level) const {
    const auto s = strides(level);
    return "'" + level_names_[level] + "' stride " + std::to_string(s[0]) +
           (s[0] == s[1] ? "" : "x" + std::to_string(s[1]));
  }

  // The detections drawn in pictures: those scoring >= 0.5, at least the best 5, at most 30
  // (a trained model keeps up to 100 low-scoring ones, which would hide the picture).
  int64_t drawn_detections() const {
    const auto& scores = stages_.heads.detections[0].scores;
    const int64_t confident = (scores >= 0.5).sum().item<int64_t>();
    return std::min<int64_t>(std::max<int64_t>(confident, std::min<int64_t>(5, scores.numel())), 30);
  }

  void input_figure() {
    Canvas canvas = make_canvas(padded_);
    const float valid[4] = {0, 0, float(stages_.size[1]), float(stages_.size[0])};
    canvas.box(valid, cv::Scalar(0, 255, 255), 2);
    const auto& t = model_->transform().options();
    const int64_t hp = stages_.batch.tensors.size(2), wp = stages_.batch.tensors.size(3);
    canvas.text("resized " + std::to_string(stages_.size[0]) + "x" + std::to_string(stages_.size[1]) + ", padded to " +
                    std::to_string(hp) + "x" + std::to_string(wp),
                4, 4, cv::Scalar(0, 255, 255));
    const double shorter = double(std::min(stages_.original[0], stages_.original[1]));
    const double longer = double(std::max(stages_.original[0], stages_.original[1]));
    json numbers = {
        {"original_size", {stages_.original[0], stages_.original[1]}},
        {"resized_size", {stages_.size[0], stages_.size[1]}},
        {"padded_size", {hp, wp}},
        {"scale", std::min(double(t.min_size.back()) / shorter, double(t.max_size) / longer)},
        {"scale_yx", {double(stages_.size[0]) / stages_.original[0], double(stages_.size[1]) / stages_.original[1]}},
        {"min_size", t.min_size.back()},
        {"max_size", t.max_size},
        {"size_divisible", t.size_divisible},
        {"image_mean", t.image_mean},
        {"image_std", t.image_std}};
    writer_.write("infer/01_input", canvas.picture, numbers,
                  "The image as the model sees it: resized so the shorter side is min_size (longer side at most "
                  "max_size), normalised, zero-padded bottom/right to a multiple of size_divisible (yellow: the "
                  "image's part).");
  }

  void fpn_features() {
    std::vector<cv::Mat> panels;
    json levels = json::array();
    for (size_t l = 0; l < stages_.features.size(); ++l) {
      const auto f = stages_.features[l].tensor[0].to(torch::kFloat);  // [C, H, W]
      const auto energy = f.pow(2).mean(0);                             // [H, W]
      const double lo = energy.min().item<double>(), mean = energy.mean().item<double>(),
                   hi = energy.max().item<double>();
      panels.push_back(titled(fit(heat_map(energy), 300),
                              {level_label(l) + ", " + std::to_string(f.size(1)) + "x" + std::to_string(f.size(2)),
                               "energy " + fixed(lo, 3) + " .. " + fixed(hi, 3)}));
      levels.push_back({{"name", level_names_[l]},
                        {"shape", {f.size(0), f.size(1), f.size(2)}},
                        {"stride", stride_json(l)},
                        {"energy", {{"min", lo}, {"mean", mean}, {"max", hi}}}});
    }
    writer_.write("infer/02_fpn_features", grid(panels, 5), {{"levels", levels}},
                  "Channel energy (mean over channels of the squared activation) of each FPN level, from fine "
                  "(stride 4) to coarse (stride 64), each map scaled from its own minimum (dark) to maximum (yellow).");
  }

  void rpn_objectness() {
    std::vector<cv::Mat> panels;
    json levels = json::array();
    for (size_t l = 0; l < stages_.rpn.objectness.size(); ++l) {
      const auto probs = torch::sigmoid(stages_.rpn.objectness[l][0].to(torch::kFloat));  // [A, H, W]
      const auto best = std::get<0>(probs.max(0));                                        // [H, W]
      const int64_t w = best.size(1);
      const int64_t at = best.flatten().argmax().item<int64_t>();
      const int64_t row = at / w, col = at % w;
      const int64_t anchor = probs.index({torch::indexing::Slice(), row, col}).argmax().item<int64_t>();
      const double max_score = best.flatten()[at].item<double>();
      const cv::Mat heat = fit(heat_map(best, 0, 1), 300);
      cv::Mat under;
      cv::resize(padded_, under, heat.size(), 0, 0, cv::INTER_AREA);
      panels.push_back(titled(blend(under, heat, 0.7),
                              {level_label(l) + ", " + std::to_string(best.size(0)) + "x" + std::to_string(w) +
                                   " x " + std::to_string(probs.size(0)) + " anchors",
                               "max " + fixed(max_score, 3) + " at row " + std::to_string(row) + " col " +
                                   std::to_string(col)}));
      levels.push_back({{"name", level_names_[l]},
                        {"shape", {probs.size(0), probs.size(1), probs.size(2)}},
                        {"stride", stride_json(l)},
                        {"max_score", max_score},
                        // The anchor's centre is at (col, row) * stride in the padded image.
                        {"at", {{"row", row}, {"col", col}, {"anchor", anchor}, {"x", col * strides(l)[1]},
                                {"y", row * strides(l)[0]}}}});
    }
    writer_.write("infer/03_rpn_objectness", grid(panels, 5), {{"levels", levels}},
                  "RPN objectness per FPN level: at each location the highest sigmoid(objectness) of its anchors, "
                  "from 0 (dark) to 1 (yellow), over the input.");
  }

  std::vector<std::pair<std::string, cv::Scalar>> level_legend(const torch::Tensor& levels, const std::string& what) const {
    std::vector<std::pair<std::string, cv::Scalar>> legend;
    const auto counts = torch::bincount(levels, {}, int64_t(level_names_.size()));
    for (size_t l = 0; l < level_names_.size(); ++l) {
      legend.push_back({level_label(l) + ": " + std::to_string(counts[l].item<int64_t>()) + " " + what, palette(int(l))});
    }
    return legend;
  }

  json level_counts(const torch::Tensor& levels) const {
    json out = json::object();
    const auto counts = torch::bincount(levels, {}, int64_t(level_names_.size()));
    for (size_t l = 0; l < level_names_.size(); ++l) out[level_names_[l]] = counts[l].item<int64_t>();
    return out;
  }

  // Draws the best `count` boxes (worst first, so the best lie on top), coloured by level.
  Canvas level_boxes(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& levels,
                     int64_t count) const {
    Canvas canvas = make_canvas(resized_);
    auto order = by_score(scores);
    order.resize(std::min<size_t>(order.size(), size_t(count)));
    const auto b = boxes.to(torch::kFloat).contiguous();
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      canvas.box(b[*it].data_ptr<float>(), palette(int(levels[*it].item<int64_t>())), 1);
    }
    return canvas;
  }

  void proposals_before_nms() {
    const auto& s = stages_.rpn.steps[0];
    const int64_t drawn = std::min<int64_t>(100, s.candidate_scores.numel());
    Canvas canvas = level_boxes(s.candidate_boxes, s.candidate_scores, s.candidate_levels, drawn);
    draw_legend(canvas.picture, level_legend(s.candidate_levels, "candidates"));
    json best = json::array();
    const auto order = by_score(s.candidate_scores);
    for (size_t i = 0; i < std::min<size_t>(20, order.size()); ++i) {
      const int64_t c = order[i];
      best.push_back({{"box", box_json(s.candidate_boxes[c])},
                      {"score", s.candidate_scores[c].item<double>()},
                      {"level", level_names_[s.candidate_levels[c].item<int64_t>()]},
                      {"anchor", s.candidate_anchors[c].item<int64_t>()}});
    }
    json numbers = {{"pre_nms_top_n", model_->rpn()->options().pre_nms_top_n_test},
                    {"count", s.candidate_scores.numel()},
                    {"count_per_level", level_counts(s.candidate_levels)},
                    {"drawn", drawn},
                    {"best", best}};
    writer_.write("infer/04_proposals_before_nms", canvas.picture, numbers,
                  "The RPN's candidates before NMS: each level's pre_nms_top_n anchors with the highest objectness, "
                  "decoded with their box deltas and clipped (the best " + std::to_string(drawn) +
                      " drawn, coloured by FPN level).");
  }

  void proposals_after_nms() {
    const auto& s = stages_.rpn.steps[0];
    const auto levels = s.candidate_levels.index_select(0, s.kept);
    const int64_t drawn = std::min<int64_t>(50, s.scores.numel());
    Canvas canvas = level_boxes(s.boxes, s.scores, levels, drawn);
    draw_legend(canvas.picture, level_legend(levels, "proposals"));
    json best = json::array();
    for (int64_t i = 0; i < std::min<int64_t>(20, s.scores.numel()); ++i) {
      best.push_back({{"box", box_json(s.boxes[i])},
                      {"score", s.scores[i].item<double>()},
                      {"level", level_names_[levels[i].item<int64_t>()]}});
    }
    const auto& o = model_->rpn()->options();
    json numbers = {{"count", s.scores.numel()},
                    {"post_nms_top_n", o.post_nms_top_n_test},
                    {"nms_thresh", o.nms_thresh},
                    {"min_size", o.min_size},
                    {"score_thresh", o.score_thresh},
                    {"count_per_level", level_counts(levels)},
                    {"drawn", drawn},
                    {"best", best}};
    writer_.write("infer/05_proposals_after_nms", canvas.picture, numbers,
                  "The RPN's proposals: candidates left after removing tiny boxes and NMS within each level "
                  "(IoU " + fixed(o.nms_thresh, 2) + "), best post_nms_top_n kept (the best " + std::to_string(drawn) +
                      " drawn, coloured by the level that proposed them).");
  }

  void roi_levels() {
    const auto& proposals = stages_.rpn.steps[0].boxes;
    const auto k = map_box_levels(proposals, k_min_, k_max_);  // the box pooler's own assignment
    const auto levels = k - k_min_;
    const int64_t drawn = std::min<int64_t>(100, proposals.size(0));
    Canvas canvas = level_boxes(proposals, stages_.rpn.steps[0].scores, levels, drawn);
    std::vector<std::pair<std::string, cv::Scalar>> legend;
    const auto counts = torch::bincount(levels, {}, int64_t(pooled_levels_.size()));
    json count_per_level = json::object();
    for (size_t l = 0; l < pooled_levels_.size(); ++l) {
      const int64_t n = counts[l].item<int64_t>();
      legend.push_back({"'" + pooled_levels_[l] + "' (k=" + std::to_string(k_min_ + int64_t(l)) + ", scale 1/" +
                            std::to_string(int64_t(std::lround(1 / pool_scales_[l]))) + "): " + std::to_string(n) + " RoIs",
                        palette(int(l))});
      count_per_level[pooled_levels_[l]] = n;
    }
    draw_legend(canvas.picture, legend);
    // A few RoIs with the formula's numbers: the best proposal of each level, then the best ones.
    std::vector<int64_t> examples;
    for (size_t l = 0; l < pooled_levels_.size(); ++l) {
      const auto at = torch::nonzero(levels == int64_t(l));
      if (at.numel()) examples.push_back(at[0][0].item<int64_t>());
    }
    for (int64_t i = 0; i < proposals.size(0) && examples.size() < 6; ++i) {
      if (std::find(examples.begin(), examples.end(), i) == examples.end()) examples.push_back(i);
    }
    std::sort(examples.begin(), examples.end());
    const auto areas = torch::sqrt(ops::box_area(proposals));
    json rois = json::array();
    for (const int64_t i : examples) {
      const double side = areas[i].item<double>();
      const double term = std::log2(side / kCanonicalScale);
      rois.push_back({{"proposal", i},
                      {"box", box_json(proposals[i])},
                      {"sqrt_area", side},
                      {"log2_sqrt_area_over_224", term},
                      {"k_unclamped", std::floor(kCanonicalLevel + term + 1e-6)},
                      {"k", k[i].item<int64_t>()},
                      {"level", pooled_levels_[levels[i].item<int64_t>()]}});
    }
    json numbers = {{"formula", "k = clamp(floor(4 + log2(sqrt(area) / 224) + 1e-6), k_min, k_max); level = k - k_min"},
                    {"canonical_scale", kCanonicalScale},
                    {"canonical_level", kCanonicalLevel},
                    {"k_min", k_min_},
                    {"k_max", k_max_},
                    {"count", proposals.size(0)},
                    {"count_per_level", count_per_level},
                    {"drawn", drawn},
                    {"examples", rois}};
    writer_.write("infer/06_roi_levels", canvas.picture, numbers,
                  "The FPN level each RoI is pooled from (k = floor(4 + log2(sqrt(area) / 224)), clamped to the "
                  "pooled levels): small boxes read fine maps, large boxes coarse ones (the best " +
                      std::to_string(drawn) + " proposals drawn).");
  }

  void roi_align_points() {
    const auto& proposals = stages_.rpn.steps[0].boxes;
    if (proposals.size(0) == 0) {
      writer_.write("infer/07_roi_align_points", nothing_to_show("The RPN proposed no box: no RoI to pool."),
                    {{"roi", nullptr}}, "RoIAlign's sampling points: no RoI on this image.");
      return;
    }
    // The top detection's proposal (the RoI its box and mask were refined from), else the best proposal.
    const auto& heads = stages_.heads.steps[0];
    int64_t proposal = 0;
    std::string source = "the best proposal (no detection)";
    if (heads.kept.numel() > 0) {
      proposal = heads.proposals[heads.kept[0].item<int64_t>()].item<int64_t>();
      const int64_t label = stages_.heads.detections[0].labels[0].item<int64_t>();
      source = "the proposal of detection 0 (" + class_name(input_, label) + ")";
    }
    const auto roi = proposals[proposal].to(torch::kFloat);
    const int64_t k = map_box_levels(roi.unsqueeze(0), k_min_, k_max_)[0].item<int64_t>();
    const size_t level = size_t(k - k_min_);
    const double scale = pool_scales_[level];
    const std::string& name = pooled_levels_[level];
    torch::Tensor feature;
    for (const auto& f : stages_.features) {
      if (f.name == name) feature = f.tensor[0].to(torch::kFloat);  // [C, H, W]
    }
    const RoiAlignGrid g = roi_align_grid(roi, scale, kBoxPool, kBoxPool, kSamplingRatio);
    // The model's own pooling of this RoI: the 7x7 values the box head reads (channel 0 shown).
    const auto pooled = model_->roi_heads()->box_roi_pool().forward(stages_.features, {roi.unsqueeze(0)},
                                                                    stages_.batch.image_sizes)[0][0];

    // Left: the RoI on the image. Right: the feature grid around it, zoomed.
    Canvas canvas = make_canvas(resized_, 300);
    canvas.box(roi.data_ptr<float>(), cv::Scalar(255, 255, 255), 2);
    const cv::Mat left = titled(canvas.picture, {"RoI on the image (" + source + ")",
                                                 "pooled from '" + name + "', k=" + std::to_string(k) +
                                                     ", spatial scale 1/" + std::to_string(std::lround(1 / scale))});
    const cv::Mat right = titled(draw_sampling_grid(feature, g),
                                 {"'" + name + "' feature pixels (cell = one pixel, centre = integer coordinate)",
                                  "white: RoI x scale; yellow: 7x7 bins; red: 2x2 sampling points per bin"});

    json bins = json::array();
    for (int64_t ph = 0; ph < g.pooled_h; ++ph) {
      for (int64_t pw = 0; pw < g.pooled_w; ++pw) {
        json points = json::array();
        for (const auto& p : g.points(ph, pw)) points.push_back({p[0], p[1]});
        bins.push_back({{"row", ph}, {"col", pw}, {"points", points}});
      }
    }
    json pooled_json = json::array();
    for (int64_t r = 0; r < pooled.size(0); ++r) {
      json row = json::array();
      for (int64_t c = 0; c < pooled.size(1); ++c) row.push_back(pooled[r][c].item<double>());
      pooled_json.push_back(row);
    }
    json numbers = {{"roi", box_json(roi)},
                    {"proposal", proposal},
                    {"source", source},
                    {"level", name},
                    {"k", k},
                    {"spatial_scale", scale},
                    {"aligned", false},
                    {"roi_in_feature_pixels", {g.x1, g.y1, g.x2, g.y2}},
                    {"feature_size", {feature.size(1), feature.size(2)}},
                    {"pooled_size", {g.pooled_h, g.pooled_w}},
                    {"sampling_ratio", kSamplingRatio},
                    {"bin_size", {g.bin_w, g.bin_h}},
                    {"formula", "x = x1 * scale + col * bin_w + (i + 0.5) * bin_w / sampling_ratio (y alike); "
                                "bin value = mean of the bilinear samples"},
                    {"bins", bins},
                    {"pooled_channel_0", pooled_json}};
    writer_.write("infer/07_roi_align_points", hconcat_padded({left, right}, 8), numbers,
                  "RoIAlign on one RoI: its 7x7 bins on the feature map it is pooled from, and the 2x2 bilinear "
                  "sampling points averaged into each bin (torchvision's aligned=false: no half-pixel shift).");
  }

  // Boxes in `order` (best first; drawn worst first so the best lie on top), the first
  // `labelled` with "class score". by_class: colour by class, else by rank (as 11's overlay).
  void class_boxes(Canvas& canvas, const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& labels,
                   const std::vector<int64_t>& order, int64_t labelled, bool by_class) const {
    const auto b = boxes.to(torch::kFloat).contiguous();
    auto colour = [&](size_t rank) {
      if (by_class) return palette(int(labels[order[rank]].item<int64_t>()));
      const auto c = instance_colour_bgr(int64_t(rank));  // the colour 11's overlay gives it
      return cv::Scalar(c[0], c[1], c[2]);
    };
    for (size_t r = order.size(); r-- > 0;) canvas.box(b[order[r]].data_ptr<float>(), colour(r), 2);
    for (int64_t i = std::min<int64_t>(labelled, int64_t(order.size())) - 1; i >= 0; --i) {
      const int64_t j = order[size_t(i)];
      canvas.text(class_name(input_, labels[j].item<int64_t>()) + " " + fixed(scores[j].item<double>(), 2),
                  b[j][0].item<double>(), b[j][1].item<double>(), colour(size_t(i)));
    }
    if (by_class) {  // legend of the classes drawn
      std::vector<int64_t> classes;
      for (const int64_t j : order) {
        const int64_t label = labels[j].item<int64_t>();
        if (std::find(classes.begin(), classes.end(), label) == classes.end()) classes.push_back(label);
      }
      std::sort(classes.begin(), classes.end());
      std::vector<std::pair<std::string, cv::Scalar>> legend;
      for (const int64_t label : classes) legend.push_back({class_name(input_, label), palette(int(label))});
      draw_legend(canvas.picture, legend, canvas.picture.cols - 150, 6);
    }
  }

  void boxes_before_nms() {
    const auto& s = stages_.heads.steps[0];
    auto order = by_score(s.scores);
    const int64_t drawn = std::min<int64_t>(100, int64_t(order.size()));
    order.resize(size_t(drawn));
    Canvas canvas = make_canvas(resized_);
    class_boxes(canvas, s.boxes, s.scores, s.labels, order, 10, /*by_class=*/true);
    json best = json::array();
    for (size_t i = 0; i < std::min<size_t>(20, order.size()); ++i) {
      const int64_t c = order[i];
      const int64_t label = s.labels[c].item<int64_t>();
      best.push_back({{"box", box_json(s.boxes[c])},
                      {"label", label},
                      {"class", class_name(input_, label)},
                      {"score", s.scores[c].item<double>()},
                      {"proposal", s.proposals[c].item<int64_t>()}});
    }
    const auto& o = model_->roi_heads()->options();
    json numbers = {{"count", s.scores.numel()},
                    {"score_thresh", o.score_thresh},
                    {"proposals", stages_.rpn.steps[0].boxes.size(0)},
                    {"drawn", drawn},
                    {"best", best}};
    writer_.write("infer/08_boxes_before_nms", canvas.picture, numbers,
                  "The box head's class-specific refined boxes scoring above score_thresh (" + fixed(o.score_thresh, 2) +
                      "), before per-class NMS: one box per (proposal, class) (the best " + std::to_string(drawn) +
                      " drawn, coloured by class, the best 10 labelled).");
  }

  void detections() {
    const auto& d = stages_.heads.detections[0];
    const auto original = resize_boxes(d.boxes, stages_.size, stages_.original);  // as predict_box_masks
    const int64_t drawn = drawn_detections();
    std::vector<int64_t> order(static_cast<size_t>(drawn));
    for (int64_t i = 0; i < drawn; ++i) order[size_t(i)] = i;
    Canvas canvas = make_canvas(resized_);
    class_boxes(canvas, d.boxes, d.scores, d.labels, order, drawn, /*by_class=*/false);
    json list = json::array();
    for (int64_t i = 0; i < d.scores.numel(); ++i) {
      const int64_t label = d.labels[i].item<int64_t>();
      list.push_back({{"box", box_json(d.boxes[i])},
                      {"box_original", box_json(original[i])},
                      {"label", label},
                      {"class", class_name(input_, label)},
                      {"score", d.scores[i].item<double>()}});
    }
    const auto& o = model_->roi_heads()->options();
    json numbers = {{"count", d.scores.numel()},
                    {"nms_thresh", o.nms_thresh},
                    {"detections_per_img", o.detections_per_img},
                    {"drawn", drawn},
                    {"detections", list}};
    writer_.write("infer/09_detections", canvas.picture, numbers,
                  "Detections after per-class NMS (IoU " + fixed(o.nms_thresh, 2) + ") and the best detections_per_img: "
                      "boxes, classes and scores, one colour per detection as in the masks' picture (" +
                      std::to_string(drawn) + " of " + std::to_string(d.scores.numel()) + " drawn).");
  }

  void mask_probabilities() {
    const auto& d = stages_.heads.detections[0];
    const int64_t shown = std::min<int64_t>(6, d.scores.numel());
    std::vector<cv::Mat> panels;
    json masks = json::array();
    for (int64_t i = 0; i < shown; ++i) {
      const auto m = d.masks[i][0].to(torch::kFloat);  // [28, 28]
      const int64_t label = d.labels[i].item<int64_t>();
      panels.push_back(titled(enlarge(heat_map(m, 0, 1), 8),
                              {"#" + std::to_string(i) + " " + class_name(input_, label) + " " +
                                   fixed(d.scores[i].item<double>(), 2),
                               std::to_string(m.size(0)) + "x" + std::to_string(m.size(1)) + ", 0 dark .. 1 yellow"}));
      json rows = json::array();
      for (int64_t r = 0; r < m.size(0); ++r) {
        json row = json::array();
        for (int64_t c = 0; c < m.size(1); ++c) row.push_back(std::round(m[r][c].item<double>() * 1e4) / 1e4);
        rows.push_back(row);
      }
      masks.push_back({{"detection", i},
                       {"label", label},
                       {"class", class_name(input_, label)},
                       {"score", d.scores[i].item<double>()},
                       {"box", box_json(d.boxes[i])},
                       {"probabilities", rows}});
    }
    const cv::Mat picture = panels.empty() ? nothing_to_show("No detection: no mask to show.") : grid(panels, 3);
    writer_.write("infer/10_mask_probabilities", picture, {{"count", shown}, {"masks", masks}},
                  "The mask head's 28x28 probabilities of the predicted class for the top detections, over each "
                  "detection's box (pasted into the image in the next picture).");
  }

  void masks_pasted() {
    Detections d = stages_.heads.detections[0];
    d.boxes = resize_boxes(d.boxes, stages_.size, stages_.original);  // as predict_box_masks
    const MaskPaster paster = model_->mask_paster(d, stages_.original[0], stages_.original[1]);
    const int64_t drawn = drawn_detections();
    OverlayOptions options;
    options.mask_thresh = 0.5;
    const int64_t shorter = std::min(stages_.original[0], stages_.original[1]);
    options.scale = int(std::max<int64_t>(1, (480 + shorter - 1) / shorter));
    std::vector<std::string> names;
    for (int64_t label = 0; label <= (d.labels.numel() ? d.labels.max().item<int64_t>() : 0); ++label) {
      names.push_back(class_name(input_, label));
    }
    Detections shown{d.boxes.slice(0, 0, drawn), d.scores.slice(0, 0, drawn), d.labels.slice(0, 0, drawn), {}};
    options.show_thresh = 0;  // `shown` holds exactly the detections to draw
    const std::string encoded = render_overlay(input_.image, shown, [&](int64_t k) { return paster.paste(k); }, names,
                                               options, ".png");
    const cv::Mat picture = cv::imdecode(std::vector<uchar>(encoded.begin(), encoded.end()), cv::IMREAD_COLOR);
    json list = json::array();
    for (int64_t k = 0; k < d.scores.numel(); ++k) {
      const int64_t label = d.labels[k].item<int64_t>();
      list.push_back({{"box", box_json(d.boxes[k])},
                      {"label", label},
                      {"class", class_name(input_, label)},
                      {"score", d.scores[k].item<double>()},
                      {"area", (paster.paste(k).probs > options.mask_thresh).sum().item<int64_t>()}});
    }
    json numbers = {{"mask_thresh", options.mask_thresh},
                    {"mask_paste", to_string(model_->options().mask_paste)},
                    {"original_size", {stages_.original[0], stages_.original[1]}},
                    {"drawn", drawn},
                    {"detections", list}};
    writer_.write("infer/11_masks_pasted", picture, numbers,
                  "Each detection's mask probabilities pasted into its box on the original image and thresholded at "
                  "0.5: the instance masks (" + std::to_string(drawn) + " of " + std::to_string(d.scores.numel()) +
                      " drawn).");
  }

  static constexpr int64_t kBoxPool = 7;

  const ExplainInput& input_;
  FigureWriter& writer_;
  MaskRcnn model_{nullptr};
  Stages stages_;
  cv::Mat padded_, resized_;
  std::vector<std::string> level_names_;
  std::vector<std::string> pooled_levels_;  // the box pooler's maps, "0".."<levels - 1>"
  std::vector<double> pool_scales_;
  int64_t k_min_ = 0, k_max_ = 0;
};

}  // namespace

void explain_inference(const ExplainInput& input, FigureWriter& writer) {
  InferenceView(input, writer).write_all();
}

}  // namespace instseg::explain
