// explain's inference view: every number in infer/*.json equals what the model's own stages
// compute on the image, recomputed here without the view (MaskRcnn::predict, RegionProposalNetwork
// ::forward and its head, RoiHeads::predict_boxes, map_box_levels, ops::roi_align).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "explain/explain_input.h"
#include "explain/figure_writer.h"
#include "explain/inference_view.h"
#include "explain_fixture.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/train_config.h"
#include "instseg/errors.h"
#include "instseg/explain/explain.h"
#include "instseg/modeling/roi_heads/poolers.h"
#include "instseg/ops/box_coder.h"
#include "instseg/ops/box_ops.h"
#include "instseg/ops/roi_align.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using torch::indexing::Slice;

const std::vector<std::string> kFigures{
    "infer/01_input",           "infer/02_fpn_features",       "infer/03_rpn_objectness",
    "infer/04_proposals_before_nms", "infer/05_proposals_after_nms", "infer/06_roi_levels",
    "infer/07_roi_align_points", "infer/08_boxes_before_nms",   "infer/09_detections",
    "infer/10_mask_probabilities", "infer/11_masks_pasted"};

torch::Tensor box_of(const json& j) {
  return torch::tensor({j[0].get<float>(), j[1].get<float>(), j[2].get<float>(), j[3].get<float>()});
}

void expect_box(const json& j, const torch::Tensor& box, const std::string& what) {
  EXPECT_TRUE(torch::allclose(box_of(j), box.to(torch::kFloat), 1e-5, 1e-4)) << what << ": " << j.dump() << " vs "
                                                                              << box;
}

// A small model whose scores spread out like a trained one's (random heads score every box
// alike), saved as a run folder (config.json + model_last.pth) that load_model() reads, and one
// explain run with --weights on the fixture's image. Shared by the tests: the run is the cost.
struct ExplainRun {
  fs::path dir;
  testing::TinyCoco files;
  MaskRcnn model{nullptr};  // the same weights, loaded back as explain loads them
  torch::Tensor image;
  ImageList batch;        // the model's transform and backbone on the image, computed here
  FeatureMaps features;
  ExplainResult result;
  std::map<std::string, json> numbers;
};

ExplainRun* make_run() {
  auto* run = new ExplainRun;
  run->dir = fs::temp_directory_path() / ("instseg_inference_view_" + std::to_string(::getpid()));
  fs::remove_all(run->dir);
  run->files = testing::write_tiny_coco((run->dir / "data").string());

  MaskRcnnOptions options = testing::small_model_options();
  // 96x128 -> 320x426: large enough for proposals on three of the four pooled levels.
  options.transform.min_size = {320};
  options.transform.max_size = 448;
  options.rpn.pre_nms_top_n_test = 60;  // below the finer levels' anchor counts: the top-k cuts
  options.rpn.post_nms_top_n_test = 80;
  // Some of the first level's candidates (scores 0.76 .. 0.83 here) go before NMS, so NMS's
  // indices must be mapped back to the candidates.
  options.rpn.score_thresh = 0.77;
  options.roi_heads.score_thresh = 0.2;
  options.roi_heads.detections_per_img = 12;
  torch::manual_seed(20);
  MaskRcnn model(options);
  {
    torch::NoGradGuard no_grad;
    model->rpn()->head->cls_logits->weight.mul_(30);
    model->roi_heads()->box_predictor->cls_score->weight.mul_(30);
    model->roi_heads()->box_predictor->bbox_pred->weight.mul_(30);
  }
  const fs::path weights = run->dir / "run";
  fs::create_directories(weights);
  TrainConfig config;
  config.model.options = options;
  std::ofstream(weights / "config.json") << config.to_json();
  save_state_dict((weights / "model_last.pth").string(), module_state_dict(*model));

  ExplainOptions explain;
  explain.input = run->files.image;
  explain.out_dir = (run->dir / "out").string();
  explain.weights = weights.string();
  explain.threads = 1;  // the inputs are small: one thread, no OpenMP spinning on a shared CI core
  explain.progress = false;
  run->result = run_explain(explain);
  for (const auto& name : kFigures) {
    std::ifstream in(run->dir / "out" / (name + ".json"));
    if (in) run->numbers[name] = json::parse(in);
  }
  run->model = model;
  run->model->eval();
  run->model->prepare_inference();  // as load_model() hands it to explain
  run->image = data::read_image_rgb(run->files.image);
  torch::NoGradGuard no_grad;
  run->batch = run->model->transform().forward({run->image});
  run->features = run->model->backbone()(run->batch.tensors);
  return run;
}

class InferenceView : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { run_ = make_run(); }
  static void TearDownTestSuite() {
    fs::remove_all(run_->dir);
    delete run_;
    run_ = nullptr;
  }
  const json& numbers(const std::string& name) {
    const auto it = run_->numbers.find(name);
    if (it == run_->numbers.end()) throw std::runtime_error(name + ".json was not written");
    return it->second;
  }
  MaskRcnn& model() { return run_->model; }

  // The first stages computed here, as MaskRcnn::predict_box_masks composes them.
  const ImageList& batch() { return run_->batch; }
  const FeatureMaps& features() { return run_->features; }
  int64_t height() { return batch().image_sizes[0][0]; }
  int64_t width() { return batch().image_sizes[0][1]; }

  static ExplainRun* run_;
};
ExplainRun* InferenceView::run_ = nullptr;

TEST_F(InferenceView, WritesTheElevenFiguresWithPicturesAndCaptions) {
  ASSERT_EQ(run_->result.figures.size(), kFigures.size());
  for (size_t i = 0; i < kFigures.size(); ++i) {
    const auto& f = run_->result.figures[i];
    EXPECT_EQ(f.picture, kFigures[i] + ".png");
    EXPECT_EQ(f.numbers, kFigures[i] + ".json");
    EXPECT_FALSE(f.caption.empty());
    const auto picture = data::read_image_rgb((run_->dir / "out" / f.picture).string());
    EXPECT_GE(std::min(picture.size(1), picture.size(2)), 80) << f.picture;
    EXPECT_EQ(numbers(kFigures[i]).at("caption"), f.caption);
  }
}

TEST_F(InferenceView, InputSizesAreTheTransforms) {
  const auto& j = numbers("infer/01_input");
  const auto& b = batch();
  EXPECT_EQ(j["original_size"], json({96, 128}));
  EXPECT_EQ(j["resized_size"], json({b.image_sizes[0][0], b.image_sizes[0][1]}));
  EXPECT_EQ(j["resized_size"], json({320, 426}));  // 96 x 128 times 320 / 96, floored
  EXPECT_EQ(j["padded_size"], json({b.tensors.size(2), b.tensors.size(3)}));
  EXPECT_EQ(j["padded_size"], json({320, 448}));  // multiples of 32
  EXPECT_NEAR(j["scale"].get<double>(), 320.0 / 96, 1e-9);
}

TEST_F(InferenceView, FeatureEnergyAndObjectnessAreTheBackbonesAndRpnHeads) {
  torch::NoGradGuard no_grad;
  const auto& b = batch();
  const auto& features = this->features();
  const auto& levels = numbers("infer/02_fpn_features")["levels"];
  ASSERT_EQ(levels.size(), features.size());
  std::vector<torch::Tensor> maps;
  for (size_t l = 0; l < features.size(); ++l) {
    const auto& f = features[l].tensor;
    maps.push_back(f);
    EXPECT_EQ(levels[l]["name"], features[l].name);
    EXPECT_EQ(levels[l]["shape"], json({f.size(1), f.size(2), f.size(3)}));
    EXPECT_EQ(levels[l]["stride"], json({b.tensors.size(2) / f.size(2), b.tensors.size(3) / f.size(3)}));
    const auto energy = (f[0] * f[0]).sum(0) / f.size(1);
    EXPECT_NEAR(levels[l]["energy"]["max"].get<double>(), energy.max().item<double>(), 1e-5 * energy.max().item<double>());
    EXPECT_NEAR(levels[l]["energy"]["mean"].get<double>(), energy.mean().item<double>(), 1e-5 * energy.max().item<double>());
    EXPECT_NEAR(levels[l]["energy"]["min"].get<double>(), energy.min().item<double>(), 1e-5 * energy.max().item<double>());
  }
  const auto [objectness, deltas] = model()->rpn()->head->forward(maps);
  const auto& rpn = numbers("infer/03_rpn_objectness")["levels"];
  ASSERT_EQ(rpn.size(), objectness.size());
  for (size_t l = 0; l < objectness.size(); ++l) {
    const auto p = torch::sigmoid(objectness[l][0]);  // [A, H, W]
    EXPECT_NEAR(rpn[l]["max_score"].get<double>(), p.max().item<double>(), 1e-6);
    const auto& at = rpn[l]["at"];
    EXPECT_NEAR(p[at["anchor"].get<int64_t>()][at["row"].get<int64_t>()][at["col"].get<int64_t>()].item<double>(),
                p.max().item<double>(), 1e-6);
    EXPECT_EQ(at["x"].get<int64_t>(), at["col"].get<int64_t>() * (b.tensors.size(3) / maps[l].size(3)));
    EXPECT_EQ(at["y"].get<int64_t>(), at["row"].get<int64_t>() * (b.tensors.size(2) / maps[l].size(2)));
  }
}

// The RPN recomputed from its head, anchors and box coder: the candidates before NMS are each
// level's top pre_nms_top_n by objectness; the proposals are forward()'s.
TEST_F(InferenceView, ProposalsBeforeAndAfterNmsAreTheRpns) {
  torch::NoGradGuard no_grad;
  const auto& b = batch();
  const auto& features = this->features();
  auto& rpn = model()->rpn();
  std::vector<torch::Tensor> maps;
  for (const auto& f : features) maps.push_back(f.tensor);
  const auto [objectness, deltas] = rpn->head->forward(maps);
  const auto predictions = flatten_rpn_outputs(objectness, deltas);
  const auto anchors = rpn->anchor_generator().forward(b, features)[0];
  const auto decoded = ops::BoxCoder{}.decode(predictions.deltas[0], anchors).view({-1, 4});  // [T, 4]
  const int64_t top_n = rpn->options().pre_nms_top_n_test;

  const auto& before = numbers("infer/04_proposals_before_nms");
  std::vector<torch::Tensor> candidates;
  int64_t offset = 0, total = 0;
  for (size_t l = 0; l < predictions.anchors_per_level.size(); ++l) {
    const int64_t count = predictions.anchors_per_level[l], k = std::min(top_n, count);
    EXPECT_EQ(before["count_per_level"][features[l].name].get<int64_t>(), k) << features[l].name;
    candidates.push_back(std::get<1>(predictions.objectness[0].narrow(0, offset, count).topk(k)) + offset);
    offset += count, total += k;
  }
  EXPECT_LT(before["count_per_level"]["0"].get<int64_t>(), predictions.anchors_per_level[0]);  // the top-k cut
  EXPECT_EQ(before["count"].get<int64_t>(), total);
  const auto idx = torch::cat(candidates);
  const auto scores = torch::sigmoid(predictions.objectness[0].index_select(0, idx));
  const auto order = std::get<1>(scores.sort(/*stable=*/true, 0, /*descending=*/true));
  const auto& best = before["best"];
  ASSERT_EQ(best.size(), 20u);
  for (size_t i = 0; i < best.size(); ++i) {
    const int64_t c = order[int64_t(i)].item<int64_t>();
    const int64_t anchor = idx[c].item<int64_t>();
    EXPECT_EQ(best[i]["anchor"].get<int64_t>(), anchor) << i;
    EXPECT_NEAR(best[i]["score"].get<double>(), scores[c].item<double>(), 1e-6) << i;
    expect_box(best[i]["box"], ops::clip_boxes_to_image(decoded[anchor].unsqueeze(0), height(), width())[0],
               "candidate " + std::to_string(i));
  }

  // After NMS: forward()'s proposals, and the scores select_proposals gives them.
  const auto proposals = rpn->forward(b, features)[0];
  const auto selected = rpn->select_proposals(decoded.unsqueeze(0), predictions.objectness, b.image_sizes,
                                              predictions.anchors_per_level,
                                              {top_n, rpn->options().post_nms_top_n_test});
  const auto& after = numbers("infer/05_proposals_after_nms");
  EXPECT_EQ(after["count"].get<int64_t>(), proposals.size(0));
  const auto first_level = scores.slice(0, 0, candidates[0].numel());
  EXPECT_LT((first_level >= rpn->options().score_thresh).sum().item<int64_t>(), first_level.numel());
  EXPECT_GT((first_level >= rpn->options().score_thresh).sum().item<int64_t>(), 0);
  EXPECT_LT(proposals.size(0), (scores >= rpn->options().score_thresh).sum().item<int64_t>());  // so did NMS
  // Each proposal's level: that of the candidate it is (the same box and score).
  const auto candidate_boxes = ops::clip_boxes_to_image(decoded.index_select(0, idx), height(), width());
  std::vector<std::string> candidate_level;
  for (size_t l = 0; l < candidates.size(); ++l) {
    candidate_level.insert(candidate_level.end(), size_t(candidates[l].numel()), features[l].name);
  }
  std::map<std::string, int64_t> per_level;
  for (int64_t i = 0; i < proposals.size(0); ++i) {
    const auto same =
        torch::nonzero((candidate_boxes == proposals[i]).all(1) & (scores == selected.second[0][i])).flatten();
    ASSERT_EQ(same.numel(), 1) << i;
    const std::string& level = candidate_level[size_t(same[0].item<int64_t>())];
    ++per_level[level];
    if (i >= int64_t(after["best"].size())) continue;
    const auto& e = after["best"][size_t(i)];
    expect_box(e["box"], proposals[i], "proposal " + std::to_string(i));
    EXPECT_NEAR(e["score"].get<double>(), selected.second[0][i].item<double>(), 1e-6);
    EXPECT_EQ(e["level"], level) << i;
  }
  for (const auto& f : features) EXPECT_EQ(after["count_per_level"][f.name].get<int64_t>(), per_level[f.name]) << f.name;
  EXPECT_GE(per_level.size(), 2u);  // proposals from several levels
  EXPECT_EQ(after["best"].size(), size_t(std::min<int64_t>(20, proposals.size(0))));
}

// Pooled levels: map_box_levels on the proposals, and the FPN paper's formula written out.
TEST_F(InferenceView, RoiLevelsAreTheBoxPoolersAssignment) {
  torch::NoGradGuard no_grad;
  const auto& b = batch();
  const auto& features = this->features();
  const auto proposals = model()->rpn()->forward(b, features)[0];
  const auto& j = numbers("infer/06_roi_levels");
  EXPECT_EQ(j["k_min"].get<int64_t>(), 2);  // stride 4 = 2^2 ...
  EXPECT_EQ(j["k_max"].get<int64_t>(), 5);  // ... to stride 32 = 2^5
  const auto k = map_box_levels(proposals, 2, 5);
  for (int64_t l = 0; l < 4; ++l) {
    EXPECT_EQ(j["count_per_level"][std::to_string(l)].get<int64_t>(), (k == l + 2).sum().item<int64_t>()) << l;
  }
  ASSERT_GE(j["examples"].size(), 2u);
  for (const auto& e : j["examples"]) {
    const int64_t i = e["proposal"].get<int64_t>();
    expect_box(e["box"], proposals[i], "example");
    const auto box = proposals[i];
    const double side = std::sqrt(double((box[2] - box[0]).item<float>()) * double((box[3] - box[1]).item<float>()));
    EXPECT_NEAR(e["sqrt_area"].get<double>(), side, 1e-3);
    const int64_t expected = std::clamp<int64_t>(int64_t(std::floor(4 + std::log2(side / 224) + 1e-6)), 2, 5);
    EXPECT_EQ(e["k"].get<int64_t>(), expected);
    EXPECT_EQ(e["k"].get<int64_t>(), k[i].item<int64_t>());
    EXPECT_EQ(e["level"], std::to_string(expected - 2));
  }
}

// Bilinear value at (x, y) of one feature channel [H, W], as RoIAlign reads it: samples beyond a
// pixel outside the map count as 0, coordinates clamp to the first and last pixels.
double bilinear(const torch::Tensor& map, double x, double y) {
  const int64_t h = map.size(0), w = map.size(1);
  if (y < -1 || y > h || x < -1 || x > w) return 0;
  y = std::max(y, 0.0), x = std::max(x, 0.0);
  int64_t y0 = int64_t(y), x0 = int64_t(x), y1 = y0 + 1, x1 = x0 + 1;
  if (y0 >= h - 1) y0 = y1 = h - 1, y = double(y0);
  if (x0 >= w - 1) x0 = x1 = w - 1, x = double(x0);
  const double ly = y - y0, lx = x - x0;
  auto at = [&](int64_t r, int64_t c) { return map[r][c].item<double>(); };
  return (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
}

// The sampling points, averaged bilinearly, give roi_align's 7x7 output on the RoI's level.
TEST_F(InferenceView, RoiAlignPointsReproduceThePooledValues) {
  torch::NoGradGuard no_grad;
  const auto& b = batch();
  const auto& features = this->features();
  const auto proposals = model()->rpn()->forward(b, features)[0];
  const auto& j = numbers("infer/07_roi_align_points");
  const auto roi = box_of(j["roi"]);
  const int64_t p = j["proposal"].get<int64_t>();
  expect_box(j["roi"], proposals[p], "the RoI is a proposal");
  const int64_t k = map_box_levels(roi.unsqueeze(0), 2, 5)[0].item<int64_t>();
  EXPECT_EQ(j["k"].get<int64_t>(), k);
  ASSERT_EQ(j["level"], std::to_string(k - 2));
  const double scale = j["spatial_scale"].get<double>();
  EXPECT_EQ(scale, 1.0 / double(int64_t(1) << k));
  const auto feature = features[size_t(k - 2)].tensor;  // [1, C, H, W]
  EXPECT_EQ(j["feature_size"], json({feature.size(2), feature.size(3)}));

  ops::RoiAlignOptions options;
  options.spatial_scale = scale;
  options.sampling_ratio = 2;
  const auto pooled = ops::roi_align(feature, torch::cat({torch::zeros({1}), roi}).unsqueeze(0), options)[0][0];
  const auto map = feature[0][0];
  ASSERT_EQ(j["bins"].size(), 49u);
  for (const auto& bin : j["bins"]) {
    const int64_t r = bin["row"].get<int64_t>(), c = bin["col"].get<int64_t>();
    ASSERT_EQ(bin["points"].size(), 4u);
    double sum = 0;
    for (const auto& pt : bin["points"]) sum += bilinear(map, pt[0].get<double>(), pt[1].get<double>());
    EXPECT_NEAR(sum / 4, pooled[r][c].item<double>(), 1e-4 * (1 + std::abs(pooled[r][c].item<double>())))
        << "bin " << r << "," << c;
    EXPECT_NEAR(j["pooled_channel_0"][r][c].get<double>(), pooled[r][c].item<double>(), 1e-5);
  }
  // Bin (0, 0)'s first point: a quarter bin in from the RoI's corner (2x2 samples, no shift).
  const double bin_w = std::max((roi[2] - roi[0]).item<double>() * scale, 1.0) / 7;
  EXPECT_NEAR(j["bins"][0]["points"][0][0].get<double>(), roi[0].item<double>() * scale + bin_w / 4, 1e-5);
}

// Box-head candidates before NMS recomputed from predict_boxes: softmax, class-specific decode,
// clip, score_thresh, boxes under 1e-2 px dropped.
TEST_F(InferenceView, BoxesBeforeNmsAreTheBoxHeadsCandidates) {
  torch::NoGradGuard no_grad;
  const auto& b = batch();
  const auto& features = this->features();
  const auto proposals = model()->rpn()->forward(b, features);
  const auto [logits, deltas] = model()->roi_heads()->predict_boxes(features, proposals, b.image_sizes);
  ops::BoxCoder coder;
  coder.weights = model()->roi_heads()->options().bbox_reg_weights;
  const auto boxes = ops::clip_boxes_to_image(coder.decode(deltas, proposals[0]), height(), width())
                         .index({Slice(), Slice(1)})
                         .reshape({-1, 4});
  const auto scores = torch::softmax(logits, -1).index({Slice(), Slice(1)}).reshape(-1);
  const auto wide = ((boxes.select(1, 2) - boxes.select(1, 0)) >= 1e-2) & ((boxes.select(1, 3) - boxes.select(1, 1)) >= 1e-2);
  const auto keep = torch::where((scores > 0.2) & wide)[0];
  const int64_t classes = logits.size(1) - 1;
  const auto& j = numbers("infer/08_boxes_before_nms");
  EXPECT_EQ(j["count"].get<int64_t>(), keep.numel());
  const auto& dets = numbers("infer/09_detections");
  EXPECT_GT(j["count"].get<int64_t>(), dets["count"].get<int64_t>());  // NMS removed some
  const auto order = std::get<1>(scores.index({keep}).sort(/*stable=*/true, 0, /*descending=*/true));
  ASSERT_EQ(j["best"].size(), size_t(std::min<int64_t>(20, keep.numel())));
  for (size_t i = 0; i < j["best"].size(); ++i) {
    const int64_t c = keep[order[int64_t(i)]].item<int64_t>();  // proposal * classes + class - 1
    const auto& e = j["best"][i];
    EXPECT_NEAR(e["score"].get<double>(), scores[c].item<double>(), 1e-6) << i;
    EXPECT_EQ(e["label"].get<int64_t>(), c % classes + 1) << i;
    EXPECT_EQ(e["proposal"].get<int64_t>(), c / classes) << i;
    expect_box(e["box"], boxes[c], "candidate " + std::to_string(i));
  }
}

// Detections, mask probabilities and pasted areas are predict's.
TEST_F(InferenceView, DetectionsAndMasksArePredicts) {
  const auto predicted = model()->predict({run_->image})[0];
  const auto boxed = model()->predict_box_masks({run_->image})[0];
  const auto& j = numbers("infer/09_detections");
  const int64_t count = predicted.scores.numel();
  ASSERT_GT(count, 1);
  ASSERT_EQ(j["count"].get<int64_t>(), count);
  ASSERT_EQ(j["detections"].size(), size_t(count));
  const auto resized = resize_boxes(predicted.boxes, {96, 128}, {height(), width()});
  for (int64_t i = 0; i < count; ++i) {
    const auto& d = j["detections"][size_t(i)];
    expect_box(d["box_original"], predicted.boxes[i], "detection " + std::to_string(i));
    expect_box(d["box"], resized[i], "detection " + std::to_string(i) + " (resized)");
    EXPECT_NEAR(d["score"].get<double>(), predicted.scores[i].item<double>(), 1e-5);
    EXPECT_EQ(d["label"].get<int64_t>(), predicted.labels[i].item<int64_t>());
  }

  const auto& masks = numbers("infer/10_mask_probabilities")["masks"];
  ASSERT_EQ(masks.size(), size_t(std::min<int64_t>(6, count)));
  for (size_t i = 0; i < masks.size(); ++i) {
    const auto expected = boxed.masks[int64_t(i)][0];  // [28, 28]
    const auto& rows = masks[i]["probabilities"];
    ASSERT_EQ(rows.size(), 28u);
    double worst = 0;
    for (int64_t r = 0; r < 28; ++r) {
      ASSERT_EQ(rows[size_t(r)].size(), 28u);
      for (int64_t c = 0; c < 28; ++c) {
        worst = std::max(worst, std::abs(rows[size_t(r)][size_t(c)].get<double>() - expected[r][c].item<double>()));
      }
    }
    EXPECT_LE(worst, 5.1e-5) << "mask " << i;  // 4 decimals
  }

  const auto& pasted = numbers("infer/11_masks_pasted")["detections"];
  ASSERT_EQ(pasted.size(), size_t(count));
  for (int64_t i = 0; i < count; ++i) {
    EXPECT_EQ(pasted[size_t(i)]["area"].get<int64_t>(), (predicted.masks[i] > 0.5).sum().item<int64_t>()) << i;
    expect_box(pasted[size_t(i)]["box"], predicted.boxes[i], "pasted " + std::to_string(i));
  }
}

TEST(InferenceViewInput, NeedsWeights) {
  explain::ExplainInput input;
  input.image = torch::rand({3, 32, 32});
  input.model = MaskRcnn(testing::small_model_options());
  input.model->eval();
  input.has_weights = false;
  const auto dir = fs::temp_directory_path() / ("instseg_inference_view_no_weights_" + std::to_string(::getpid()));
  explain::FigureWriter writer(dir.string(), "png", false);
  EXPECT_THROW(explain::explain_inference(input, writer), InputError);
  EXPECT_TRUE(writer.figures().empty());
}

}  // namespace
}  // namespace instseg
