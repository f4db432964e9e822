// explain's training view: one image and its ground truth taken through the model's own training
// stages (transform, anchors, RPN matching and sampling, box coding, RoI sampling, mask targets,
// the five losses), each shown as a picture with the numbers behind it. Every number comes from
// the stage the training code runs (mask_rcnn.cpp losses()); nothing is re-implemented here.
#include "training_view.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "drawing.h"
#include "instseg/modeling/roi_heads/losses.h"
#include "instseg/modeling/roi_heads/training_samples.h"
#include "instseg/modeling/sampler.h"
#include "instseg/ops/box_coder.h"
#include "instseg/ops/box_ops.h"

namespace instseg::explain {
namespace {


using json = nlohmann::json;

constexpr size_t kListCap = 300;     // longest index list written to a JSON file
constexpr size_t kWorkedAnchors = 4;  // anchors written out with the regression formula
constexpr size_t kWorkedFg = 3, kWorkedBg = 2;  // RoIs written out with their classification
const cv::Scalar kWhite(255, 255, 255), kGrey(150, 150, 150), kYellow(0, 230, 255), kMagenta(255, 0, 255),
    kGreen(60, 220, 60), kOrange(0, 140, 255);

// Everything the training stages compute for the image, in the resized image's pixels.
struct Pass {
  std::array<int64_t, 2> original{}, resized{}, padded{};
  int64_t min_size = 0;
  ImageList batch;
  Targets targets;  // as the training transform resizes them
  FeatureMaps features;
  // Anchors in the head's flattened order (level, row, column, anchor), and where each level starts.
  torch::Tensor anchors;  // [T, 4]
  std::vector<int64_t> per_level, offsets, per_location;
  std::vector<std::array<int64_t, 2>> feature_sizes, strides;
  torch::Tensor objectness, deltas;  // [T], [T, 4]: the RPN head's predictions
  torch::Tensor iou, best_iou, best_gt;  // [G, T], [T], [T] (best_gt -1 without GT)
  torch::Tensor labels, matched_boxes, regression_targets;  // assign_targets, BoxCoder(1, 1, 1, 1)
  torch::Tensor sampled_pos, sampled_neg;  // indices into the anchors
  RpnLosses rpn;
  torch::Tensor proposals;  // the RPN's training proposals
  RoiSample roi;
  torch::Tensor roi_iou;  // [S] best IoU of each sampled RoI with a GT box
  torch::Tensor class_logits, box_deltas;
  FastRcnnLosses box;
  torch::Tensor foreground;  // indices into the RoI sample
  torch::Tensor mask_logits, loss_mask;
  int64_t mask_size = 28;
  torch::Tensor gt_mask_targets;  // [G, M, M]
};

Pass run_stages(const ExplainInput& input) {
  torch::NoGradGuard no_grad;
  MaskRcnn model = input.model;
  Pass p;
  const Targets& gt = *input.targets;
  // One generator for every draw, in the order MaskRcnn::losses makes them: the min_size pick,
  // the anchor sample, the RoI sample. The transform resizes to the inference size (the last
  // min_size) so the picture does not depend on the draw; it still makes the draw, so the
  // samples below are those training makes with this seed when min_size has one entry.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(input.seed);
  TransformOptions transform_options = model->transform().options();
  p.min_size = transform_options.min_size.back();
  transform_options.min_size = {p.min_size};
  const GeneralizedRcnnTransform transform(transform_options);
  auto [batch, targets] = transform.forward_train({input.image}, {gt}, generator);
  p.batch = batch;
  p.targets = targets.front();
  p.original = {input.image.size(1), input.image.size(2)};
  p.resized = p.batch.image_sizes.front();
  p.padded = {p.batch.tensors.size(2), p.batch.tensors.size(3)};

  p.features = model->backbone()(p.batch.tensors);
  auto& rpn = model->rpn();
  std::vector<torch::Tensor> levels;
  for (const auto& f : p.features) levels.push_back(f.tensor);
  const auto [objectness, deltas] = rpn->head->forward(levels);
  const auto predictions = flatten_rpn_outputs(objectness, deltas);
  p.objectness = predictions.objectness[0];
  p.deltas = predictions.deltas[0];
  p.per_level = predictions.anchors_per_level;
  p.anchors = rpn->anchor_generator().forward(p.batch, p.features).front();
  p.per_location = rpn->anchor_generator().num_anchors_per_location();
  int64_t offset = 0;
  for (size_t l = 0; l < p.features.size(); ++l) {
    const auto& t = p.features[l].tensor;
    p.feature_sizes.push_back({t.size(2), t.size(3)});
    p.strides.push_back({p.padded[0] / t.size(2), p.padded[1] / t.size(3)});
    p.offsets.push_back(offset);
    offset += p.per_level[l];
  }

  const int64_t num_gt = p.targets.boxes.size(0);
  std::tie(p.labels, p.matched_boxes) = rpn->assign_targets(p.anchors, p.targets.boxes);
  if (num_gt > 0) {
    p.iou = ops::box_iou(p.targets.boxes, p.anchors);
    std::tie(p.best_iou, p.best_gt) = p.iou.max(0);  // the matcher's own argmax
  } else {
    p.iou = torch::zeros({0, p.anchors.size(0)});
    p.best_iou = torch::zeros({p.anchors.size(0)});
    p.best_gt = torch::full({p.anchors.size(0)}, -1, torch::kLong);
  }
  p.regression_targets = ops::BoxCoder{}.encode(p.matched_boxes, p.anchors);

  // The RPN's training proposals; forward_train samples anchors from a copy of the generator, so
  // the sampler below makes the same draw from the same state.
  auto rpn_generator = generator.clone();
  p.proposals = rpn->forward_train(p.batch, p.features, {p.targets.boxes}, rpn_generator).proposals.front();
  const BalancedPositiveNegativeSampler sampler(rpn->options().batch_size_per_image, rpn->options().positive_fraction);
  const auto [pos, neg] = sampler({p.labels.to(torch::kLong)}, generator);
  p.sampled_pos = torch::nonzero(pos.front()).squeeze(1);
  p.sampled_neg = torch::nonzero(neg.front()).squeeze(1);
  p.rpn = rpn_losses(p.objectness.unsqueeze(0), p.deltas, p.labels, p.regression_targets, p.sampled_pos, p.sampled_neg);

  auto& heads = model->roi_heads();
  p.roi = select_training_samples({p.proposals}, {p.targets}, heads->options(), generator).front();
  p.roi_iou = num_gt > 0 ? std::get<0>(ops::box_iou(p.roi.proposals, p.targets.boxes).max(1))
                         : torch::zeros({p.roi.proposals.size(0)});
  std::tie(p.class_logits, p.box_deltas) = heads->predict_boxes(p.features, {p.roi.proposals}, p.batch.image_sizes);
  p.box = fastrcnn_loss(p.class_logits, p.box_deltas, p.roi.labels, p.roi.regression_targets);
  p.foreground = torch::where(p.roi.labels > 0)[0];
  if (p.foreground.numel() > 0) {
    const auto boxes = p.roi.proposals.index_select(0, p.foreground);
    const auto matched = p.roi.matched_idxs.index_select(0, p.foreground);
    p.mask_logits = heads->predict_mask_logits(p.features, {boxes}, p.batch.image_sizes);
    p.mask_size = p.mask_logits.size(-1);
    p.loss_mask = maskrcnn_loss(p.mask_logits, {boxes}, {p.targets.masks}, {p.targets.labels}, {matched});
  } else {
    p.loss_mask = torch::zeros({});
  }
  if (num_gt > 0) {
    p.gt_mask_targets = project_masks_on_boxes(p.targets.masks, p.targets.boxes, torch::arange(num_gt), p.mask_size);
  }
  return p;
}

// ---- numbers to JSON and text ----

json box_json(const torch::Tensor& box) {
  const auto b = box.to(torch::kFloat).contiguous();
  const float* v = b.data_ptr<float>();
  return {v[0], v[1], v[2], v[3]};
}

json floats(const torch::Tensor& t) {
  const auto v = t.to(torch::kFloat).contiguous().flatten();
  json out = json::array();
  for (int64_t i = 0; i < v.numel(); ++i) out.push_back(v[i].item<float>());
  return out;
}

json index_list(const torch::Tensor& t, size_t cap = kListCap) {
  const auto v = t.to(torch::kLong).contiguous();
  json out = json::array();
  for (int64_t i = 0; i < v.numel() && size_t(i) < cap; ++i) out.push_back(v[i].item<int64_t>());
  return out;
}

double rounded(double v, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(v * f) / f;
}

// [M, M] -> rows of values rounded to `decimals`.
json grid_json(const torch::Tensor& t, int decimals = 4) {
  const auto v = t.to(torch::kDouble).contiguous();
  const auto a = v.accessor<double, 2>();
  json rows = json::array();
  for (int64_t y = 0; y < v.size(0); ++y) {
    json row = json::array();
    for (int64_t x = 0; x < v.size(1); ++x) row.push_back(rounded(a[y][x], decimals));
    rows.push_back(row);
  }
  return rows;
}

std::string num(double v, int precision = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

std::string class_name(const ExplainInput& input, int64_t label) {
  if (label == 0) return "background";
  if (label >= 0 && size_t(label) < input.class_names.size()) return input.class_names[size_t(label)];
  return "class " + std::to_string(label);
}

json size_json(const std::array<int64_t, 2>& s) { return {{"height", s[0]}, {"width", s[1]}}; }

// Where anchor `index` sits: FPN level, feature-map cell and which of the cell's anchors.
struct AnchorPlace {
  size_t level = 0;
  int64_t row = 0, column = 0, anchor = 0;
};

AnchorPlace place_of(const Pass& p, int64_t index) {
  AnchorPlace a;
  while (a.level + 1 < p.offsets.size() && index >= p.offsets[a.level + 1]) ++a.level;
  const int64_t within = index - p.offsets[a.level], per = p.per_location[a.level];
  a.anchor = within % per;
  a.row = (within / per) / p.feature_sizes[a.level][1];
  a.column = (within / per) % p.feature_sizes[a.level][1];
  return a;
}

std::string sizes_text(const std::vector<double>& sizes) {
  std::string text;
  for (const double v : sizes) text += (text.empty() ? "" : "/") + num(v, 0);
  return text;
}

std::string level_name(size_t level) { return "P" + std::to_string(level + 2); }

// The resized input as the network sees it (normalisation undone), padding included.
cv::Mat input_picture(const ExplainInput& input, const Pass& p) {
  const auto& o = input.model->transform().options();
  return denormalized_bgr(p.batch.tensors[0], o.image_mean, o.image_std);
}

void draw_gt(Canvas& c, const ExplainInput& input, const Pass& p, int thickness = 2, bool named = true) {
  for (int64_t g = 0; g < p.targets.boxes.size(0); ++g) {
    const auto b = p.targets.boxes[g].contiguous();
    c.box(b.data_ptr<float>(), palette(int(g)), thickness);
    if (named) {
      c.text("GT " + std::to_string(g) + " " + class_name(input, p.targets.labels[g].item<int64_t>()),
              b[0].item<float>(), b[1].item<float>() - 18 / c.scale, palette(int(g)));
    }
  }
}

json gt_json(const ExplainInput& input, const Pass& p) {
  json list = json::array();
  for (int64_t g = 0; g < p.targets.boxes.size(0); ++g) {
    const int64_t label = p.targets.labels[g].item<int64_t>();
    list.push_back({{"index", g},
                    {"label", label},
                    {"class", class_name(input, label)},
                    {"box", box_json(p.targets.boxes[g])},
                    {"box_original_pixels", box_json(input.targets->boxes[g])}});
  }
  return list;
}

// ---- the figures ----

void write_input(const ExplainInput& input, const Pass& p, FigureWriter& writer) {
  const auto& o = input.model->transform().options();
  Canvas c(input_picture(input, p), display_scale(int(p.padded[0]), int(p.padded[1])));
  hatch_padding(c, int(p.resized[0]), int(p.resized[1]));
  draw_gt(c, input, p);
  const auto legend = text_panel(
      {{input.image_name + ": " + std::to_string(p.original[1]) + "x" + std::to_string(p.original[0]) +
            " -> resized " + std::to_string(p.resized[1]) + "x" + std::to_string(p.resized[0]) + " -> padded " +
            std::to_string(p.padded[1]) + "x" + std::to_string(p.padded[0]) + " (width x height)",
        kWhite},
       {"min_size " + std::to_string(p.min_size) + ", max_size " + std::to_string(o.max_size) +
            ", padded to a multiple of " + std::to_string(o.size_divisible),
        kWhite},
       {"hatched orange: zero padding (after normalisation), not part of the image", kOrange},
       {"coloured boxes: ground truth, resized with the image", palette(0)}},
      c.picture.cols);
  json mins = json::array();
  for (auto s : o.min_size) mins.push_back(s);
  const json numbers = {
      {"image", input.image_name},
      {"original_size", size_json(p.original)},
      {"resized_size", size_json(p.resized)},
      {"padded_size", size_json(p.padded)},
      {"scale", {{"y", double(p.resized[0]) / double(p.original[0])}, {"x", double(p.resized[1]) / double(p.original[1])}}},
      {"min_size_used", p.min_size},
      {"model_min_sizes", mins},
      {"max_size", o.max_size},
      {"size_divisible", o.size_divisible},
      {"image_mean", o.image_mean},
      {"image_std", o.image_std},
      {"gt", gt_json(input, p)},
      {"note", "boxes [x1, y1, x2, y2] in the resized image's pixels (box_original_pixels: the file's); the input "
               "is (image - mean) / std, zero-padded bottom and right to padded_size; training draws each image's "
               "min_size from model_min_sizes, this view uses the last (inference) one"}};
  writer.write("train/01_input", vconcat_padded({c.picture, legend}), numbers,
               "The image as the network sees it: resized to min_size " + std::to_string(p.min_size) +
                   " (max " + std::to_string(o.max_size) + "), normalised and zero-padded (hatched), with its " +
                   std::to_string(p.targets.boxes.size(0)) + " ground-truth boxes.");
}

void write_anchors(const ExplainInput& input, const Pass& p, FigureWriter& writer) {
  // The locations shown: each GT box's centre, then the image centre.
  struct Location {
    std::string name;
    double x, y;
  };
  std::vector<Location> locations;
  for (int64_t g = 0; g < p.targets.boxes.size(0); ++g) {
    const auto b = p.targets.boxes[g];
    locations.push_back({"GT " + std::to_string(g) + " centre", (b[0].item<float>() + b[2].item<float>()) / 2.0,
                         (b[1].item<float>() + b[3].item<float>()) / 2.0});
  }
  locations.push_back({"image centre", p.resized[1] / 2.0, p.resized[0] / 2.0});

  const auto& anchor_options = input.model->options().anchors;
  const cv::Mat base = input_picture(input, p) * 0.6;
  const double scale = std::min(2.0, 380.0 / double(std::max(p.padded[0], p.padded[1])));
  std::vector<cv::Mat> panels;
  json levels = json::array();
  for (size_t l = 0; l < p.features.size(); ++l) {
    Canvas c(base, scale);
    hatch_padding(c, int(p.resized[0]), int(p.resized[1]));
    json drawn = json::array();
    std::set<std::pair<int64_t, int64_t>> cells;
    for (const auto& loc : locations) {
      const int64_t row = std::min(int64_t(loc.y) / p.strides[l][0], p.feature_sizes[l][0] - 1);
      const int64_t column = std::min(int64_t(loc.x) / p.strides[l][1], p.feature_sizes[l][1] - 1);
      c.dot(loc.x, loc.y, kWhite, 3);
      if (!cells.insert({row, column}).second) continue;  // two locations in one cell
      for (int64_t a = 0; a < p.per_location[l]; ++a) {
        const int64_t index = p.offsets[l] + (row * p.feature_sizes[l][1] + column) * p.per_location[l] + a;
        const auto box = p.anchors[index].contiguous();
        c.box(box.data_ptr<float>(), palette(int(l) + 3), 1);
        const size_t n_sizes = anchor_options.sizes[l].size();
        drawn.push_back({{"location", loc.name},
                         {"point", {loc.x, loc.y}},
                         {"row", row},
                         {"column", column},
                         {"anchor", a},
                         {"size", anchor_options.sizes[l][size_t(a) % n_sizes]},
                         {"aspect_ratio", anchor_options.aspect_ratios[l][size_t(a) / n_sizes]},
                         {"index", index},
                         {"box", box_json(box)}});
      }
    }
    cv::Mat panel = c.picture;
    draw_text(panel,
              level_name(l) + " stride " + std::to_string(p.strides[l][1]) + ": " +
                  std::to_string(p.feature_sizes[l][1]) + "x" + std::to_string(p.feature_sizes[l][0]) + " cells x " +
                  std::to_string(p.per_location[l]) + ", size " + sizes_text(anchor_options.sizes[l]),
              2, 2, palette(int(l) + 3));
    panels.push_back(panel);
    levels.push_back({{"level", level_name(l)},
                      {"feature", p.features[l].name},
                      {"stride", {{"y", p.strides[l][0]}, {"x", p.strides[l][1]}}},
                      {"feature_size", size_json(p.feature_sizes[l])},
                      {"anchors_per_location", p.per_location[l]},
                      {"sizes", anchor_options.sizes[l]},
                      {"aspect_ratios", anchor_options.aspect_ratios[l]},
                      {"total_anchors", p.per_level[l]},
                      {"first_index", p.offsets[l]},
                      {"anchors", drawn}});
  }
  panels.push_back(text_panel({{"white dots: the locations shown", kWhite},
                               {"(GT box centres, image centre)", kWhite},
                               {"boxes: every anchor of the cell", kWhite},
                               {"holding the dot, one panel per", kWhite},
                               {"FPN level, sizes x aspect ratios", kWhite},
                               {"total anchors: " + std::to_string(p.anchors.size(0)), kWhite}},
                              panels.front().cols));
  const json numbers = {{"levels", levels},
                        {"total_anchors", p.anchors.size(0)},
                        {"order", "flattened index = first_index of the level + (row * feature width + column) * "
                                  "anchors_per_location + anchor; anchor = ratio index * len(sizes) + size index"},
                        {"note", "boxes [x1, y1, x2, y2] in the padded input's pixels (the resized image's, padding "
                                 "beyond); aspect_ratio = height / width"}};
  writer.write("train/02_anchors", grid(panels, 3), numbers,
               "The anchors of each FPN level (one panel per level, all sizes x aspect ratios) at the centre of "
               "each ground-truth box and of the image.");
}

void write_matches(const ExplainInput& input, const Pass& p, FigureWriter& writer) {
  MaskRcnn model = input.model;  // the stages' accessors are not const
  const auto& o = model->rpn()->options();
  const auto positive = (p.labels == 1) & (p.best_iou >= o.fg_iou_thresh);
  const auto low_quality = (p.labels == 1) & (p.best_iou < o.fg_iou_thresh);
  const auto ignored = p.labels == -1;
  const auto negative = p.labels == 0;
  Canvas c(input_picture(input, p), display_scale(int(p.padded[0]), int(p.padded[1])));
  hatch_padding(c, int(p.resized[0]), int(p.resized[1]));
  // Ignored anchors as dots at their centres (boxes would hide the picture).
  const auto ignored_idx = torch::nonzero(ignored).squeeze(1);
  for (int64_t i = 0; i < ignored_idx.numel(); ++i) {
    const auto b = p.anchors[ignored_idx[i].item<int64_t>()];
    c.dot((b[0].item<float>() + b[2].item<float>()) / 2, (b[1].item<float>() + b[3].item<float>()) / 2, kYellow, 1);
  }
  json per_gt = json::array();
  std::vector<TextLine> lines;
  for (int64_t g = 0; g < p.targets.boxes.size(0); ++g) {
    const auto mine = p.best_gt == g;
    const auto pos_idx = torch::nonzero(positive & mine).squeeze(1);
    const auto low_idx = torch::nonzero(low_quality & mine).squeeze(1);
    for (const auto& [idx, colour] : {std::make_pair(pos_idx, palette(int(g))), std::make_pair(low_idx, kMagenta)}) {
      for (int64_t i = 0; i < idx.numel(); ++i) {
        c.box(p.anchors[idx[i].item<int64_t>()].contiguous().data_ptr<float>(), colour, 1);
      }
    }
    const double best = p.iou[g].max().item<double>();
    const int64_t label = p.targets.labels[g].item<int64_t>();
    per_gt.push_back({{"index", g},
                      {"class", class_name(input, label)},
                      {"box", box_json(p.targets.boxes[g])},
                      {"best_iou", p.iou[g].max().item<float>()},
                      {"num_positive", pos_idx.numel()},
                      {"num_best_match_below_fg", low_idx.numel()},
                      {"positive_indices", index_list(pos_idx)},
                      {"best_match_indices", index_list(low_idx)}});
    lines.push_back({"GT " + std::to_string(g) + " " + class_name(input, label) + ": best IoU " + num(best) + ", " +
                         std::to_string(pos_idx.numel()) + " anchors IoU >= " + num(o.fg_iou_thresh, 2) + ", " +
                         std::to_string(low_idx.numel()) + " kept by best match",
                     palette(int(g))});
  }
  draw_gt(c, input, p, 3);
  const int64_t n_pos = positive.sum().item<int64_t>(), n_low = low_quality.sum().item<int64_t>(),
                n_ign = ignored.sum().item<int64_t>(), n_neg = negative.sum().item<int64_t>();
  lines.insert(lines.begin(),
               {{"thin boxes in a GT's colour: positive anchors (IoU >= " + num(o.fg_iou_thresh, 2) + "): " +
                     std::to_string(n_pos),
                 kWhite},
                {"magenta: below " + num(o.fg_iou_thresh, 2) + " but a GT's best match (kept positive): " +
                     std::to_string(n_low),
                 kMagenta},
                {"yellow dots (anchor centres): ignored, " + num(o.bg_iou_thresh, 2) + " <= IoU < " +
                     num(o.fg_iou_thresh, 2) + ": " + std::to_string(n_ign),
                 kYellow},
                {"not drawn: negatives, IoU < " + num(o.bg_iou_thresh, 2) + ": " + std::to_string(n_neg) + " of " +
                     std::to_string(p.anchors.size(0)) + " anchors",
                 kGrey}});
  const json numbers = {
      {"thresholds", {{"fg_iou_thresh", o.fg_iou_thresh}, {"bg_iou_thresh", o.bg_iou_thresh},
                      {"allow_low_quality_matches", true}}},
      {"counts", {{"positive", n_pos}, {"best_match_below_fg", n_low}, {"ignored", n_ign}, {"negative", n_neg},
                  {"total", p.anchors.size(0)}}},
      {"gt", per_gt},
      {"note", "each anchor is matched to the GT box of highest IoU; label 1 (positive) when IoU >= fg_iou_thresh "
               "or when it ties for a GT box's best IoU (best_match), -1 (ignored) between the thresholds, 0 "
               "(negative) below bg_iou_thresh; index lists hold at most " + std::to_string(kListCap) +
               " entries, indices in the flattened anchor order of train/02_anchors"}};
  writer.write("train/03_anchor_matches", vconcat_padded({c.picture, text_panel(lines, c.picture.cols)}), numbers,
               "Anchors matched to each ground-truth box: positives (IoU >= " + num(o.fg_iou_thresh, 2) +
                   "), best matches kept below that, ignored anchors between the thresholds; the rest are "
                   "negatives (IoU < " + num(o.bg_iou_thresh, 2) + ").");
}

void write_samples(const ExplainInput& input, const Pass& p, FigureWriter& writer) {
  MaskRcnn model = input.model;  // the stages' accessors are not const
  const auto& o = model->rpn()->options();
  Canvas c(input_picture(input, p), display_scale(int(p.padded[0]), int(p.padded[1])));
  hatch_padding(c, int(p.resized[0]), int(p.resized[1]));
  for (int64_t i = 0; i < p.sampled_neg.numel(); ++i) {
    const auto b = p.anchors[p.sampled_neg[i].item<int64_t>()];
    const double x = (b[0].item<float>() + b[2].item<float>()) / 2, y = (b[1].item<float>() + b[3].item<float>()) / 2;
    c.dot(x, y, cv::Scalar(0, 0, 0), 3);  // a dark ring keeps white dots visible on light images
    c.dot(x, y, kWhite, 2);
  }
  for (int64_t i = 0; i < p.sampled_pos.numel(); ++i) {
    c.box(p.anchors[p.sampled_pos[i].item<int64_t>()].contiguous().data_ptr<float>(), kGreen, 1);
  }
  const int64_t max_pos = int64_t(double(o.batch_size_per_image) * o.positive_fraction);
  const int64_t candidates_pos = (p.labels == 1).sum().item<int64_t>(), candidates_neg = (p.labels == 0).sum().item<int64_t>();
  const std::vector<TextLine> lines = {
      {"green boxes: sampled positive anchors: " + std::to_string(p.sampled_pos.numel()) + " of " +
           std::to_string(candidates_pos) + " (at most " + std::to_string(max_pos) + ")",
       kGreen},
      {"white dots (centres): sampled negative anchors: " + std::to_string(p.sampled_neg.numel()) + " of " +
           std::to_string(candidates_neg),
       kWhite},
      {"batch_size_per_image " + std::to_string(o.batch_size_per_image) + ", positive_fraction " +
           num(o.positive_fraction, 2) + ", seed " + std::to_string(input.seed),
       kWhite}};
  const json numbers = {
      {"seed", input.seed},
      {"batch_size_per_image", o.batch_size_per_image},
      {"positive_fraction", o.positive_fraction},
      {"max_positive", max_pos},
      {"counts", {{"positive_candidates", candidates_pos}, {"negative_candidates", candidates_neg},
                  {"sampled_positive", p.sampled_pos.numel()}, {"sampled_negative", p.sampled_neg.numel()}}},
      {"sampled_positive_indices", index_list(p.sampled_pos)},
      {"sampled_negative_indices", index_list(p.sampled_neg)},
      {"note", "up to batch_size_per_image * positive_fraction positives drawn at random (torch.randperm with a "
               "generator seeded with `seed`, after the transform's one draw), negatives fill the rest; the RPN's "
               "losses see only these anchors; indices in the flattened anchor order, ascending, lists capped at " +
               std::to_string(kListCap)}};
  writer.write("train/04_anchor_samples", vconcat_padded({c.picture, text_panel(lines, c.picture.cols)}), numbers,
               "The anchors sampled for the RPN's losses with seed " + std::to_string(input.seed) + ": " +
                   std::to_string(p.sampled_pos.numel()) + " positives (boxes) and " +
                   std::to_string(p.sampled_neg.numel()) + " negatives (dots).");
}

// Up to `count` sampled positives: each GT box's best-overlapping one first, then by IoU.
std::vector<int64_t> worked_anchors(const Pass& p, size_t count) {
  std::vector<int64_t> pos;
  for (int64_t i = 0; i < p.sampled_pos.numel(); ++i) pos.push_back(p.sampled_pos[i].item<int64_t>());
  std::stable_sort(pos.begin(), pos.end(), [&](int64_t a, int64_t b) {
    return p.best_iou[a].item<float>() > p.best_iou[b].item<float>();
  });
  std::vector<int64_t> chosen;
  std::set<int64_t> gts;
  for (const int64_t i : pos) {
    if (chosen.size() < count && gts.insert(p.best_gt[i].item<int64_t>()).second) chosen.push_back(i);
  }
  for (const int64_t i : pos) {
    if (chosen.size() < count && std::find(chosen.begin(), chosen.end(), i) == chosen.end()) chosen.push_back(i);
  }
  return chosen;
}

void write_regression(const ExplainInput& input, const Pass& p, FigureWriter& writer) {
  const double beta = 1.0 / 9;
  const auto& anchor_options = input.model->options().anchors;
  const auto chosen = worked_anchors(p, kWorkedAnchors);
  Canvas c(input_picture(input, p), display_scale(int(p.padded[0]), int(p.padded[1])));
  hatch_padding(c, int(p.resized[0]), int(p.resized[1]));
  std::vector<TextLine> lines;
  json anchors = json::array();
  for (size_t k = 0; k < chosen.size(); ++k) {
    const int64_t i = chosen[k];
    const auto colour = palette(int(k) + 5);
    const auto a = p.anchors[i].contiguous(), g = p.matched_boxes[i].contiguous();
    c.box(g.data_ptr<float>(), colour, 3);
    c.box(a.data_ptr<float>(), colour, 1);
    c.text("#" + std::to_string(k + 1), a[0].item<float>(), a[1].item<float>(), colour);
    // The formula's numbers in float, as BoxCoder computes them.
    const float aw = a[2].item<float>() - a[0].item<float>(), ah = a[3].item<float>() - a[1].item<float>();
    const float ax = a[0].item<float>() + 0.5f * aw, ay = a[1].item<float>() + 0.5f * ah;
    const float gw = g[2].item<float>() - g[0].item<float>(), gh = g[3].item<float>() - g[1].item<float>();
    const float gx = g[0].item<float>() + 0.5f * gw, gy = g[1].item<float>() + 0.5f * gh;
    const auto target = p.regression_targets[i];
    const auto predicted = p.deltas[i];
    const float logit = p.objectness[i].item<float>();
    const auto bce = torch::binary_cross_entropy_with_logits(p.objectness[i], torch::ones({}));
    const auto smooth = torch::smooth_l1_loss(predicted, target, at::Reduction::None, beta);
    const auto place = place_of(p, i);
    anchors.push_back({
        {"number", k + 1},
        {"index", i},
        {"level", level_name(place.level)},
        {"row", place.row},
        {"column", place.column},
        {"anchor", place.anchor},
        {"size", anchor_options.sizes[place.level][size_t(place.anchor) % anchor_options.sizes[place.level].size()]},
        {"aspect_ratio",
         anchor_options.aspect_ratios[place.level][size_t(place.anchor) / anchor_options.sizes[place.level].size()]},
        {"iou", p.best_iou[i].item<float>()},
        {"matched_gt", p.best_gt[i].item<int64_t>()},
        {"anchor_box", box_json(a)},
        {"gt_box", box_json(g)},
        {"anchor_centre_size", {{"ax", ax}, {"ay", ay}, {"aw", aw}, {"ah", ah}}},
        {"gt_centre_size", {{"gx", gx}, {"gy", gy}, {"gw", gw}, {"gh", gh}}},
        {"target", {{"dx", target[0].item<float>()}, {"dy", target[1].item<float>()},
                    {"dw", target[2].item<float>()}, {"dh", target[3].item<float>()}}},
        {"formula", {{"dx", "(gx - ax) / aw = (" + num(gx) + " - " + num(ax) + ") / " + num(aw) + " = " +
                                num(target[0].item<float>(), 4)},
                     {"dy", "(gy - ay) / ah = (" + num(gy) + " - " + num(ay) + ") / " + num(ah) + " = " +
                                num(target[1].item<float>(), 4)},
                     {"dw", "log(gw / aw) = log(" + num(gw) + " / " + num(aw) + ") = " + num(target[2].item<float>(), 4)},
                     {"dh", "log(gh / ah) = log(" + num(gh) + " / " + num(ah) + ") = " + num(target[3].item<float>(), 4)}}},
        {"predicted", {{"objectness_logit", logit}, {"deltas", floats(predicted)}}},
        {"loss_terms", {{"objectness_label", 1},
                        {"objectness_bce", bce.item<float>()},
                        {"delta_minus_target", floats(predicted - target)},
                        {"smooth_l1", floats(smooth)},
                        {"smooth_l1_sum", smooth.sum().item<float>()}}}});
    lines.push_back({"#" + std::to_string(k + 1) + " anchor " + std::to_string(i) + " (" + level_name(place.level) +
                         " row " + std::to_string(place.row) + " col " + std::to_string(place.column) + "), IoU " +
                         num(p.best_iou[i].item<float>()) + " with GT " + std::to_string(p.best_gt[i].item<int64_t>()),
                     colour});
    lines.push_back({"  anchor centre (" + num(ax, 1) + ", " + num(ay, 1) + ") size " + num(aw, 1) + " x " + num(ah, 1) +
                         "; GT centre (" + num(gx, 1) + ", " + num(gy, 1) + ") size " + num(gw, 1) + " x " + num(gh, 1),
                     kWhite});
    lines.push_back({"  dx = (" + num(gx, 1) + " - " + num(ax, 1) + ") / " + num(aw, 1) + " = " + num(target[0].item<float>()) +
                         "   dy = (" + num(gy, 1) + " - " + num(ay, 1) + ") / " + num(ah, 1) + " = " +
                         num(target[1].item<float>()),
                     kWhite});
    lines.push_back({"  dw = log(" + num(gw, 1) + " / " + num(aw, 1) + ") = " + num(target[2].item<float>()) + "   dh = log(" +
                         num(gh, 1) + " / " + num(ah, 1) + ") = " + num(target[3].item<float>()),
                     kWhite});
    lines.push_back({"  predicted logit " + num(logit) + " -> BCE " + num(bce.item<float>()) + "; deltas (" +
                         num(predicted[0].item<float>()) + ", " + num(predicted[1].item<float>()) + ", " +
                         num(predicted[2].item<float>()) + ", " + num(predicted[3].item<float>()) + ") -> smooth-L1 " +
                         num(smooth.sum().item<float>()),
                     kGrey});
  }
  const int64_t sampled = p.sampled_pos.numel() + p.sampled_neg.numel();
  lines.push_back({"RPN losses over the " + std::to_string(sampled) + " sampled anchors: objectness " +
                       num(p.rpn.objectness.item<float>(), 4) + ", box regression " + num(p.rpn.box_reg.item<float>(), 4),
                   kYellow});
  const json numbers = {
      {"box_coder_weights", {1.0, 1.0, 1.0, 1.0}},
      {"smooth_l1_beta", beta},
      {"anchors", anchors},
      {"rpn_losses",
       {{"loss_objectness", p.rpn.objectness.item<float>()},
        {"loss_rpn_box_reg", p.rpn.box_reg.item<float>()},
        {"num_sampled", sampled},
        {"num_sampled_positive", p.sampled_pos.numel()},
        {"loss_objectness_formula", "mean over the num_sampled anchors of BCE(logit, label), label 1 positive, 0 negative"},
        {"loss_rpn_box_reg_formula", "sum over the sampled positives of smooth_l1(predicted deltas - target, beta) "
                                     "over the 4 coordinates, divided by num_sampled"}}},
      {"note", "anchors: sampled positives; a = anchor, g = its matched GT box, both [x1, y1, x2, y2] in the "
               "resized image's pixels; centre = x1 + w / 2; target (dx, dy, dw, dh) = BoxCoder(1, 1, 1, 1).encode; "
               "objectness_bce = log(1 + exp(-logit)) (label 1); smooth_l1(d) = 0.5 d^2 / beta when |d| < beta, "
               "else |d| - 0.5 beta, d = delta_minus_target; predictions are the model's (" +
                   std::string(input.has_weights ? "the loaded weights" : "initialised from the seed, no weights") +
                   ")"}};
  const cv::Mat panel = text_panel(lines, 0);
  writer.write("train/05_regression_targets", vconcat_padded({c.picture, panel}), numbers,
               "Box regression targets of " + std::to_string(chosen.size()) +
                   " sampled positive anchors (thin) towards their ground-truth boxes (thick), with the formula's "
                   "numbers, the model's predictions and their loss terms.");
}

void write_roi_samples(const ExplainInput& input, const Pass& p, FigureWriter& writer) {
  MaskRcnn model = input.model;
  const auto& o = model->roi_heads()->options();
  const auto& s = p.roi;
  Canvas c(input_picture(input, p), display_scale(int(p.padded[0]), int(p.padded[1])));
  hatch_padding(c, int(p.resized[0]), int(p.resized[1]));
  const auto background = torch::where(s.labels == 0)[0];
  {
    // Hundreds of background boxes, blended in so the picture stays visible beneath.
    Canvas layer(c.picture, 1.0);  // a copy at the same display scale
    layer.scale = c.scale;
    for (int64_t i = 0; i < background.numel(); ++i) {
      layer.box(s.proposals[background[i].item<int64_t>()].contiguous().data_ptr<float>(), kGrey, 1);
    }
    cv::addWeighted(c.picture, 0.65, layer.picture, 0.35, 0, c.picture);
  }
  // Colours by the classes present, in label order (palette(label) can give neighbours alike).
  std::vector<int64_t> classes;
  for (int64_t k = 0; k < p.foreground.numel(); ++k) classes.push_back(s.labels[p.foreground[k].item<int64_t>()].item<int64_t>());
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  const auto colour_of = [&](int64_t label) {
    if (label == 0) return kGrey;
    return palette(int(std::lower_bound(classes.begin(), classes.end(), label) - classes.begin()));
  };
  json foreground = json::array();
  for (int64_t k = 0; k < p.foreground.numel(); ++k) {
    const int64_t i = p.foreground[k].item<int64_t>(), label = s.labels[i].item<int64_t>();
    c.box(s.proposals[i].contiguous().data_ptr<float>(), colour_of(label), 2);
    foreground.push_back({{"sample_index", i}, {"box", box_json(s.proposals[i])}, {"label", label}});
  }
  // A few RoIs written out: foreground ones of distinct GT boxes first, then background.
  std::vector<int64_t> worked;
  std::set<int64_t> gts;
  for (int64_t k = 0; k < p.foreground.numel() && worked.size() < kWorkedFg; ++k) {
    const int64_t i = p.foreground[k].item<int64_t>();
    if (gts.insert(s.matched_idxs[i].item<int64_t>()).second) worked.push_back(i);
  }
  for (int64_t k = 0; k < p.foreground.numel() && worked.size() < kWorkedFg; ++k) {
    const int64_t i = p.foreground[k].item<int64_t>();
    if (std::find(worked.begin(), worked.end(), i) == worked.end()) worked.push_back(i);
  }
  for (int64_t k = 0; k < std::min<int64_t>(int64_t(kWorkedBg), background.numel()); ++k) {
    worked.push_back(background[k].item<int64_t>());
  }
  const auto probabilities = torch::softmax(p.class_logits, 1);
  json rois = json::array();
  std::vector<TextLine> lines;
  for (const int64_t i : worked) {
    const int64_t label = s.labels[i].item<int64_t>();
    const auto ce = torch::nn::functional::cross_entropy(p.class_logits[i].unsqueeze(0), s.labels[i].unsqueeze(0));
    rois.push_back({{"sample_index", i},
                    {"box", box_json(s.proposals[i])},
                    {"label", label},
                    {"class", class_name(input, label)},
                    {"matched_gt", label > 0 ? json(s.matched_idxs[i].item<int64_t>()) : json(nullptr)},
                    {"iou", p.roi_iou[i].item<float>()},
                    {"regression_target", label > 0 ? floats(s.regression_targets[i]) : json(nullptr)},
                    {"class_logits", floats(p.class_logits[i])},
                    {"softmax", floats(probabilities[i])},
                    {"cross_entropy", ce.item<float>()}});
    lines.push_back({"RoI " + std::to_string(i) + ": " + class_name(input, label) + ", IoU " +
                         num(p.roi_iou[i].item<float>()) + ", p(" + class_name(input, label) + ") = " +
                         num(probabilities[i][label].item<float>()) + ", cross-entropy " + num(ce.item<float>()),
                     colour_of(label)});
  }
  draw_gt(c, input, p, 1, false);
  std::vector<TextLine> legend = {
      {"sampled: " + std::to_string(p.foreground.numel()) + " foreground (IoU >= " + num(o.fg_iou_thresh, 2) +
           ", coloured by class), " + std::to_string(background.numel()) + " background (grey, IoU < " +
           num(o.bg_iou_thresh, 2) + ")",
       kWhite},
      {"from " + std::to_string(p.proposals.size(0)) + " RPN proposals + " + std::to_string(p.targets.boxes.size(0)) +
           " GT boxes; batch_size_per_image " + std::to_string(o.batch_size_per_image) + ", positive_fraction " +
           num(o.positive_fraction, 2),
       kWhite}};
  for (const int64_t label : classes) legend.push_back({"  " + class_name(input, label), colour_of(label)});
  legend.insert(legend.end(), lines.begin(), lines.end());
  legend.push_back({"fastrcnn_loss over the sample: classifier " + num(p.box.classifier.item<float>(), 4) +
                        ", box regression " + num(p.box.box_reg.item<float>(), 4),
                    kYellow});
  const int64_t candidates = p.proposals.size(0) + p.targets.boxes.size(0);
  const json numbers = {
      {"thresholds", {{"fg_iou_thresh", o.fg_iou_thresh}, {"bg_iou_thresh", o.bg_iou_thresh}}},
      {"batch_size_per_image", o.batch_size_per_image},
      {"positive_fraction", o.positive_fraction},
      {"bbox_reg_weights", o.bbox_reg_weights},
      {"seed", input.seed},
      {"counts", {{"rpn_proposals", p.proposals.size(0)}, {"gt_boxes_appended", p.targets.boxes.size(0)},
                  {"candidates", candidates}, {"foreground", p.foreground.numel()},
                  {"background", background.numel()}, {"sampled", s.labels.size(0)}}},
      {"foreground_rois", foreground},
      {"rois", rois},
      {"fastrcnn_loss", {{"loss_classifier", p.box.classifier.item<float>()},
                         {"loss_box_reg", p.box.box_reg.item<float>()}}},
      {"note", "sample_index: position in the sample (select_training_samples order: candidates in order, the GT "
               "boxes last); iou: best IoU with a GT box; regression_target = BoxCoder(bbox_reg_weights).encode(GT, "
               "RoI); cross_entropy = -log softmax[label]; loss_classifier is its mean over the sample, loss_box_reg "
               "the smooth-L1 (beta 1/9) of the true class's deltas summed over foreground RoIs / sampled"}};
  writer.write("train/06_roi_samples", vconcat_padded({c.picture, text_panel(legend, c.picture.cols)}), numbers,
               "The box head's training sample: " + std::to_string(p.foreground.numel()) +
                   " foreground RoIs coloured by class and " + std::to_string(background.numel()) +
                   " background RoIs in grey, drawn from the RPN's proposals and the ground-truth boxes.");
}

// The crop of `picture` (the resized input, image pixels) under `box`, resized to side x side.
cv::Mat crop(const cv::Mat& picture, const torch::Tensor& box, int side) {
  const auto b = box.to(torch::kFloat);
  const int x1 = std::clamp(int(std::floor(b[0].item<float>())), 0, picture.cols - 1);
  const int y1 = std::clamp(int(std::floor(b[1].item<float>())), 0, picture.rows - 1);
  const int x2 = std::clamp(int(std::ceil(b[2].item<float>())), x1 + 1, picture.cols);
  const int y2 = std::clamp(int(std::ceil(b[3].item<float>())), y1 + 1, picture.rows);
  cv::Mat out;
  cv::resize(picture(cv::Rect(x1, y1, x2 - x1, y2 - y1)), out, cv::Size(side, side), 0, 0, cv::INTER_NEAREST);
  return out;
}

void write_mask_targets(const ExplainInput& input, const Pass& p, FigureWriter& writer) {
  const int factor = 5, side = int(p.mask_size) * factor;
  // The resized image without its padding: the masks' size.
  const cv::Mat image = input_picture(input, p)(cv::Rect(0, 0, int(p.resized[1]), int(p.resized[0]))).clone();
  std::vector<cv::Mat> rows, cells;
  json instances = json::array();
  for (int64_t g = 0; g < p.targets.boxes.size(0); ++g) {
    const int64_t label = p.targets.labels[g].item<int64_t>();
    // The full-size mask over the image, to show what RoIAlign cuts from.
    cv::Mat tinted = image.clone();
    const auto mask = p.targets.masks[g].to(torch::kUInt8).contiguous();
    const cv::Mat m(int(mask.size(0)), int(mask.size(1)), CV_8U, mask.data_ptr<uint8_t>());
    cv::Mat overlay = tinted.clone();
    overlay.setTo(palette(int(g)), m);
    cv::addWeighted(tinted, 0.5, overlay, 0.5, 0, tinted);
    const auto target = p.gt_mask_targets[g];
    cells.push_back(vconcat_padded(
        {text_panel({{"GT " + std::to_string(g) + " " + class_name(input, label), palette(int(g))}}),
         hconcat_padded({crop(tinted, p.targets.boxes[g], side), enlarge(heat_map(target, 0, 1), factor)})}));
    instances.push_back({{"index", g},
                         {"label", label},
                         {"class", class_name(input, label)},
                         {"box", box_json(p.targets.boxes[g])},
                         {"mask_target", grid_json(target)}});
  }
  // Instances in a grid of four columns: a photo with many objects stays a readable picture.
  for (size_t i = 0; i < cells.size(); i += 4) {
    rows.push_back(hconcat_padded(std::vector<cv::Mat>(cells.begin() + i, cells.begin() + std::min(i + 4, cells.size())),
                                  12));
  }
  json roi = nullptr;
  if (p.foreground.numel() > 0) {
    // The first foreground RoI of the sample: its target is cut along the RoI, not the GT box.
    const int64_t i = p.foreground[0].item<int64_t>();
    const int64_t label = p.roi.labels[i].item<int64_t>(), matched = p.roi.matched_idxs[i].item<int64_t>();
    const auto box = p.roi.proposals[i];
    const auto target = project_masks_on_boxes(p.targets.masks, box.unsqueeze(0), p.roi.matched_idxs[i].unsqueeze(0),
                                               p.mask_size)[0];
    const auto logits = p.mask_logits[0][label];
    const auto bce = torch::binary_cross_entropy_with_logits(logits, target);
    rows.push_back(text_panel({{"RoI " + std::to_string(i) + " (" + class_name(input, label) + ", GT " +
                                    std::to_string(matched) + "): crop | target | predicted probability, BCE " +
                                    num(bce.item<float>()),
                                kWhite}}));
    rows.push_back(hconcat_padded({crop(image, box, side), enlarge(heat_map(target, 0, 1), factor),
                                   enlarge(heat_map(torch::sigmoid(logits), 0, 1), factor)}));
    roi = {{"sample_index", i},
           {"box", box_json(box)},
           {"matched_gt", matched},
           {"label", label},
           {"class", class_name(input, label)},
           {"mask_target", grid_json(target)},
           {"predicted_logits", grid_json(logits)},
           {"bce", bce.item<float>()}};
  }
  rows.push_back(text_panel(
      {{"each instance: the crop under its box (GT mask tinted), then its " + std::to_string(p.mask_size) + "x" +
            std::to_string(p.mask_size) + " target (RoIAlign of the full mask, 0 dark .. 1 yellow)",
        kWhite},
       {"last row: a sampled foreground RoI, its target and the model's predicted mask probabilities", kWhite},
       {"maskrcnn_loss over the " + std::to_string(p.foreground.numel()) + " foreground RoIs: " +
            num(p.loss_mask.item<float>(), 4),
        kYellow}}));
  const json numbers = {
      {"mask_size", p.mask_size},
      {"instances", instances},
      {"roi", roi},
      {"num_foreground_rois", p.foreground.numel()},
      {"loss_mask", p.loss_mask.item<float>()},
      {"note", "mask_target: project_masks_on_boxes (RoIAlign of the full-size resized mask, spatial scale 1, "
               "adaptive sampling, aligned false) along the box, values rounded to 4 decimals; roi: the first "
               "foreground RoI of train/06_roi_samples, its predicted mask logits for its class and their mean "
               "binary cross-entropy with the target; loss_mask: that mean over all foreground RoIs"}};
  writer.write("train/07_mask_targets", vconcat_padded(rows), numbers,
               "Each ground-truth instance's " + std::to_string(p.mask_size) + "x" + std::to_string(p.mask_size) +
                   " mask target as RoIAlign cuts it from the full mask, beside the instance's crop.");
}

}  // namespace

void explain_training(const ExplainInput& input, FigureWriter& writer) {
  TORCH_CHECK(input.targets.has_value(), "explain_training: the image has no ground truth");
  const Pass p = run_stages(input);
  write_input(input, p, writer);
  write_anchors(input, p, writer);
  write_matches(input, p, writer);
  write_samples(input, p, writer);
  write_regression(input, p, writer);
  write_roi_samples(input, p, writer);
  write_mask_targets(input, p, writer);
}

}  // namespace instseg::explain
