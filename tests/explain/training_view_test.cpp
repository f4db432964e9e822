// explain's training view: the numbers in each train/*.json equal what the model's own training
// stages compute for the same image, ground truth and seed, recomputed here the way
// MaskRcnn::losses runs them (transform -> backbone -> RPN forward_train -> RoI sampling -> heads);
// and the losses the figures report equal MaskRcnn::losses itself.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "explain/explain_input.h"
#include "explain/figure_writer.h"
#include "explain/training_view.h"
#include "explain_fixture.h"
#include "instseg/data/coco_dataset.h"
#include "instseg/data/image_io.h"
#include "instseg/explain/explain.h"
#include "instseg/modeling/roi_heads/losses.h"
#include "instseg/modeling/roi_heads/training_samples.h"
#include "instseg/modeling/sampler.h"
#include "instseg/ops/box_coder.h"
#include "instseg/ops/box_ops.h"
#include "support/test_dir.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kSeed = 7;  // not 0: a view that ignored the seed would draw other samples
const char* const kFigures[] = {"train/01_input",         "train/02_anchors",
                                "train/03_anchor_matches", "train/04_anchor_samples",
                                "train/05_regression_targets", "train/06_roi_samples",
                                "train/07_mask_targets"};

torch::Tensor box_of(const json& j) {
  return torch::tensor({j[0].get<float>(), j[1].get<float>(), j[2].get<float>(), j[3].get<float>()});
}

torch::Tensor floats_of(const json& j) {
  std::vector<float> v;
  for (const auto& x : j) v.push_back(x.get<float>());
  return torch::tensor(v);
}

std::vector<int64_t> ints_of(const json& j) {
  std::vector<int64_t> v;
  for (const auto& x : j) v.push_back(x.get<int64_t>());
  return v;
}

std::vector<int64_t> ints_of(const torch::Tensor& t) {
  const auto c = t.to(torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what,
                  double tolerance = 1e-5) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_TRUE(torch::allclose(actual.to(torch::kDouble), expected.to(torch::kDouble), tolerance, tolerance))
      << what << ": json " << actual << " model " << expected;
}

// What the training code computes for the image, step by step as MaskRcnn::losses runs it, with
// the stages' own functions. Independent of the explain code.
struct Training {
  ImageList batch;
  Targets targets;
  FeatureMaps features;
  torch::Tensor anchors, objectness, deltas, labels, matched_boxes, sampled_pos, sampled_neg;
  RpnTrainOutput rpn;
  RoiSample roi;
  torch::Tensor class_logits, box_deltas;
  std::map<std::string, torch::Tensor> losses;  // MaskRcnn::losses itself
};

class TrainingViewTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = (fs::temp_directory_path() / ("instseg_TrainingView_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    const auto files = testing::write_tiny_coco(dir_ + "/data");
    data::CocoDataset dataset(files.annotations, dir_ + "/data", {}, /*check_images=*/false);
    const auto sample = dataset.get(dataset.index_of_file("shapes.png"));
    input_ = new explain::ExplainInput;
    input_->image = sample.image;
    input_->targets = sample.targets;
    input_->image_name = "shapes.png";
    input_->class_names = dataset.categories().class_names();
    input_->seed = kSeed;
    torch::manual_seed(3);
    input_->model = MaskRcnn(testing::small_model_options());
    input_->model->eval();

    explain::FigureWriter writer(dir_ + "/out", "png", /*progress=*/false);
    explain::explain_training(*input_, writer);
    writer.write_index();
    figures_ = new std::map<std::string, json>;
    for (const char* name : kFigures) {
      (*figures_)[name] = json::parse(testing::read_file_bytes(dir_ + "/out/" + name + ".json"));
    }
    training_ = new Training(recompute(*input_));
  }
  static void TearDownTestSuite() {
    delete training_;
    delete figures_;
    delete input_;
    fs::remove_all(dir_);
  }

  static Training recompute(const explain::ExplainInput& input) {
    torch::NoGradGuard no_grad;
    MaskRcnn model = input.model;
    Training t;
    auto generator = at::make_generator<at::CPUGeneratorImpl>(input.seed);
    auto [batch, targets] = model->transform().forward_train({input.image}, {*input.targets}, generator);
    t.batch = batch;
    t.targets = targets.front();
    t.features = model->backbone()(t.batch.tensors);
    auto& rpn = model->rpn();
    t.anchors = rpn->anchor_generator().forward(t.batch, t.features).front();
    std::vector<torch::Tensor> levels;
    for (const auto& f : t.features) levels.push_back(f.tensor);
    const auto [objectness, deltas] = rpn->head->forward(levels);
    const auto flat = flatten_rpn_outputs(objectness, deltas);
    t.objectness = flat.objectness[0];
    t.deltas = flat.deltas[0];
    std::tie(t.labels, t.matched_boxes) = rpn->assign_targets(t.anchors, t.targets.boxes);
    // The anchors forward_train samples: the same sampler from the same generator state.
    auto copy = generator.clone();
    const BalancedPositiveNegativeSampler sampler(rpn->options().batch_size_per_image, rpn->options().positive_fraction);
    const auto [pos, neg] = sampler({t.labels.to(torch::kLong)}, copy);
    t.sampled_pos = torch::nonzero(pos[0]).squeeze(1);
    t.sampled_neg = torch::nonzero(neg[0]).squeeze(1);
    t.rpn = rpn->forward_train(t.batch, t.features, {t.targets.boxes}, generator);
    t.roi = select_training_samples(t.rpn.proposals, {t.targets}, model->roi_heads()->options(), generator).front();
    std::tie(t.class_logits, t.box_deltas) =
        model->roi_heads()->predict_boxes(t.features, {t.roi.proposals}, t.batch.image_sizes);
    t.losses = model->losses({input.image}, {*input.targets}, at::make_generator<at::CPUGeneratorImpl>(input.seed));
    return t;
  }

  static const json& figure(const std::string& name) { return figures_->at(name); }

  static std::string dir_;
  static explain::ExplainInput* input_;
  static std::map<std::string, json>* figures_;
  static Training* training_;
};

std::string TrainingViewTest::dir_;
explain::ExplainInput* TrainingViewTest::input_ = nullptr;
std::map<std::string, json>* TrainingViewTest::figures_ = nullptr;
Training* TrainingViewTest::training_ = nullptr;

TEST_F(TrainingViewTest, WritesTheSevenFiguresWithPicturesAndCaptions) {
  const auto index = json::parse(testing::read_file_bytes(dir_ + "/out/index.json"));
  ASSERT_EQ(index["figures"].size(), std::size(kFigures));
  for (size_t i = 0; i < std::size(kFigures); ++i) {
    const auto& entry = index["figures"][i];
    EXPECT_EQ(entry["picture"], std::string(kFigures[i]) + ".png");
    EXPECT_EQ(entry["numbers"], std::string(kFigures[i]) + ".json");
    EXPECT_FALSE(entry["caption"].get<std::string>().empty()) << kFigures[i];
    EXPECT_EQ(figure(kFigures[i])["caption"], entry["caption"]);
    const auto picture = data::read_image_rgb(dir_ + "/out/" + entry["picture"].get<std::string>());
    EXPECT_GE(picture.size(1), 80) << kFigures[i];  // readable: at least the input's size
    EXPECT_GE(picture.size(2), 106) << kFigures[i];
  }
}

// The resized input and ground truth are the training transform's (MaskRcnn::losses' own).
TEST_F(TrainingViewTest, InputSizesAndBoxesAreTheTrainingTransforms) {
  const auto& j = figure("train/01_input");
  const auto& t = *training_;
  EXPECT_EQ(j["original_size"]["height"], 96);
  EXPECT_EQ(j["original_size"]["width"], 128);
  EXPECT_EQ(j["resized_size"]["height"], t.batch.image_sizes[0][0]);
  EXPECT_EQ(j["resized_size"]["width"], t.batch.image_sizes[0][1]);
  EXPECT_EQ(j["resized_size"]["height"], 80);  // 96 * 80 / 96; 128 * 0.8333 floored
  EXPECT_EQ(j["resized_size"]["width"], 106);
  EXPECT_EQ(j["padded_size"]["height"], t.batch.tensors.size(2));
  EXPECT_EQ(j["padded_size"]["width"], t.batch.tensors.size(3));
  EXPECT_EQ(j["min_size_used"], 80);
  EXPECT_EQ(j["max_size"], 160);
  EXPECT_DOUBLE_EQ(j["image_mean"][1].get<double>(), 0.456);
  EXPECT_DOUBLE_EQ(j["image_std"][2].get<double>(), 0.225);
  ASSERT_EQ(j["gt"].size(), 2u);
  for (int64_t g = 0; g < 2; ++g) {
    expect_close(box_of(j["gt"][g]["box"]), t.targets.boxes[g], "GT box " + std::to_string(g), 1e-6);
    EXPECT_EQ(j["gt"][g]["label"], t.targets.labels[g].item<int64_t>());
  }
  EXPECT_EQ(j["gt"][0]["class"], "bar");
  EXPECT_EQ(j["gt"][1]["class"], "disc");
  // The bar's box (12, 30, 60, 54) scaled by 106 / 128 and 80 / 96.
  EXPECT_NEAR(j["gt"][0]["box"][2].get<double>(), 60.0 * 106 / 128, 1e-4);
  EXPECT_NEAR(j["gt"][0]["box"][3].get<double>(), 54.0 * 80 / 96, 1e-4);
}

TEST_F(TrainingViewTest, AnchorsAreTheAnchorGenerators) {
  const auto& j = figure("train/02_anchors");
  const auto& t = *training_;
  ASSERT_EQ(j["levels"].size(), t.features.size());
  EXPECT_EQ(j["total_anchors"], t.anchors.size(0));
  int64_t first = 0, drawn = 0;
  for (size_t l = 0; l < t.features.size(); ++l) {
    const auto& level = j["levels"][l];
    const int64_t h = t.features[l].tensor.size(2), w = t.features[l].tensor.size(3);
    EXPECT_EQ(level["feature_size"]["height"], h);
    EXPECT_EQ(level["feature_size"]["width"], w);
    EXPECT_EQ(level["stride"]["x"], t.batch.tensors.size(3) / w);
    EXPECT_EQ(level["anchors_per_location"], 3);
    EXPECT_EQ(level["total_anchors"], h * w * 3);
    EXPECT_EQ(level["first_index"], first);
    first += h * w * 3;
    // Three locations (two GT centres, the image centre), some sharing a cell on coarse levels.
    EXPECT_GE(level["anchors"].size(), 3u);
    for (const auto& a : level["anchors"]) {
      const int64_t index = a["index"];
      EXPECT_EQ(index, level["first_index"].get<int64_t>() + (a["row"].get<int64_t>() * w + a["column"].get<int64_t>()) * 3 +
                           a["anchor"].get<int64_t>());
      expect_close(box_of(a["box"]), t.anchors[index], "anchor " + std::to_string(index), 0);
      // The anchor is centred on the cell holding the point.
      const double stride = level["stride"]["x"];
      EXPECT_EQ(a["column"].get<int64_t>(), int64_t(a["point"][0].get<double>() / stride));
      EXPECT_EQ(a["row"].get<int64_t>(), int64_t(a["point"][1].get<double>() / stride));
      const auto b = t.anchors[index];
      EXPECT_NEAR((b[0] + b[2]).item<double>() / 2, a["column"].get<double>() * stride, 1.0);
      ++drawn;
    }
  }
  EXPECT_EQ(first, t.anchors.size(0));
  EXPECT_GE(drawn, 15);
}

TEST_F(TrainingViewTest, MatchesAreTheRpnAssignment) {
  const auto& j = figure("train/03_anchor_matches");
  const auto& t = *training_;
  const auto& o = input_->model->options().rpn;
  EXPECT_EQ(j["thresholds"]["fg_iou_thresh"], o.fg_iou_thresh);
  EXPECT_EQ(j["thresholds"]["bg_iou_thresh"], o.bg_iou_thresh);
  const auto& c = j["counts"];
  EXPECT_EQ(c["positive"].get<int64_t>() + c["best_match_below_fg"].get<int64_t>(), (t.labels == 1).sum().item<int64_t>());
  EXPECT_EQ(c["ignored"], (t.labels == -1).sum().item<int64_t>());
  EXPECT_EQ(c["negative"], (t.labels == 0).sum().item<int64_t>());
  EXPECT_EQ(c["total"], t.anchors.size(0));
  const auto iou = ops::box_iou(t.targets.boxes, t.anchors);  // [G, T]
  ASSERT_EQ(j["gt"].size(), 2u);
  int64_t positives = 0;
  for (int64_t g = 0; g < 2; ++g) {
    const auto& e = j["gt"][g];
    EXPECT_FLOAT_EQ(e["best_iou"].get<float>(), iou[g].max().item<float>());
    const auto positive = ints_of(e["positive_indices"]), best = ints_of(e["best_match_indices"]);
    EXPECT_EQ(e["num_positive"], int64_t(positive.size()));
    for (const int64_t i : positive) {
      EXPECT_EQ(t.labels[i].item<float>(), 1) << i;
      EXPECT_GE(iou[g][i].item<float>(), o.fg_iou_thresh) << i;
      // Matched to this GT box: assign_targets' matched box is this one.
      expect_close(t.matched_boxes[i], t.targets.boxes[g], "matched box of " + std::to_string(i), 0);
    }
    for (const int64_t i : best) {
      EXPECT_EQ(t.labels[i].item<float>(), 1) << i;
      EXPECT_LT(iou.select(1, i).max().item<float>(), o.fg_iou_thresh) << i;
    }
    positives += int64_t(positive.size() + best.size());
  }
  // Every anchor assign_targets labels 1 is in exactly one GT's lists.
  EXPECT_EQ(positives, (t.labels == 1).sum().item<int64_t>());
  EXPECT_GT(c["positive"].get<int64_t>(), 0);
}

TEST_F(TrainingViewTest, SampledAnchorsAreTheSamplersWithTheSeed) {
  const auto& j = figure("train/04_anchor_samples");
  const auto& t = *training_;
  EXPECT_EQ(j["seed"], kSeed);
  EXPECT_EQ(ints_of(j["sampled_positive_indices"]), ints_of(t.sampled_pos));
  EXPECT_EQ(ints_of(j["sampled_negative_indices"]), ints_of(t.sampled_neg));
  EXPECT_EQ(j["counts"]["sampled_positive"], t.sampled_pos.numel());
  EXPECT_EQ(j["counts"]["sampled_negative"], t.sampled_neg.numel());
  EXPECT_EQ(t.sampled_pos.numel() + t.sampled_neg.numel(), 256);
}

TEST_F(TrainingViewTest, RegressionTargetsAreTheBoxCodersAndLossesTheRpns) {
  const auto& j = figure("train/05_regression_targets");
  const auto& t = *training_;
  const double beta = 1.0 / 9;
  const auto sampled = ints_of(t.sampled_pos);
  int non_square = 0;
  ASSERT_GE(j["anchors"].size(), 3u);
  ASSERT_LE(j["anchors"].size(), 5u);
  for (const auto& a : j["anchors"]) {
    const int64_t i = a["index"];
    EXPECT_NE(std::find(sampled.begin(), sampled.end(), i), sampled.end()) << i << " is not a sampled positive";
    expect_close(box_of(a["anchor_box"]), t.anchors[i], "anchor box", 0);
    expect_close(box_of(a["gt_box"]), t.matched_boxes[i], "matched GT box", 0);
    const auto target = ops::BoxCoder{}.encode(t.matched_boxes[i].unsqueeze(0), t.anchors[i].unsqueeze(0))[0];
    const auto& d = a["target"];
    expect_close(torch::tensor({d["dx"].get<float>(), d["dy"].get<float>(), d["dw"].get<float>(), d["dh"].get<float>()}),
                 target, "target of anchor " + std::to_string(i), 1e-6);
    // The formula's numbers: centres and sizes of the two boxes, dx = (gx - ax) / aw, dw = log(gw / aw), ...
    const auto& an = a["anchor_centre_size"];
    const auto& gt = a["gt_centre_size"];
    const auto ab = t.anchors[i], gb = t.matched_boxes[i];
    EXPECT_FLOAT_EQ(an["aw"].get<float>(), (ab[2] - ab[0]).item<float>());
    EXPECT_FLOAT_EQ(an["ah"].get<float>(), (ab[3] - ab[1]).item<float>());
    EXPECT_FLOAT_EQ(an["ax"].get<float>(), (ab[0] + 0.5 * (ab[2] - ab[0])).item<float>());
    EXPECT_FLOAT_EQ(an["ay"].get<float>(), (ab[1] + 0.5 * (ab[3] - ab[1])).item<float>());
    EXPECT_FLOAT_EQ(gt["gw"].get<float>(), (gb[2] - gb[0]).item<float>());
    EXPECT_FLOAT_EQ(gt["gh"].get<float>(), (gb[3] - gb[1]).item<float>());
    EXPECT_FLOAT_EQ(gt["gx"].get<float>(), (gb[0] + 0.5 * (gb[2] - gb[0])).item<float>());
    EXPECT_FLOAT_EQ(gt["gy"].get<float>(), (gb[1] + 0.5 * (gb[3] - gb[1])).item<float>());
    non_square += an["aw"].get<float>() != an["ah"].get<float>();
    EXPECT_NEAR(d["dx"].get<double>(), (gt["gx"].get<double>() - an["ax"].get<double>()) / an["aw"].get<double>(), 1e-5);
    EXPECT_NEAR(d["dy"].get<double>(), (gt["gy"].get<double>() - an["ay"].get<double>()) / an["ah"].get<double>(), 1e-5);
    EXPECT_NEAR(d["dw"].get<double>(), std::log(gt["gw"].get<double>() / an["aw"].get<double>()), 1e-5);
    EXPECT_NEAR(d["dh"].get<double>(), std::log(gt["gh"].get<double>() / an["ah"].get<double>()), 1e-5);
    // The model's predictions and each term of the RPN's losses for this anchor.
    const double logit = a["predicted"]["objectness_logit"];
    EXPECT_FLOAT_EQ(float(logit), t.objectness[i].item<float>());
    const auto predicted = floats_of(a["predicted"]["deltas"]);
    expect_close(predicted, t.deltas[i], "predicted deltas", 0);
    EXPECT_NEAR(a["loss_terms"]["objectness_bce"].get<double>(), std::log1p(std::exp(-logit)), 1e-5);
    double sum = 0;
    for (int k = 0; k < 4; ++k) {
      const double diff = std::abs(predicted[k].item<double>() - target[k].item<double>());
      const double term = diff < beta ? 0.5 * diff * diff / beta : diff - 0.5 * beta;
      EXPECT_NEAR(a["loss_terms"]["smooth_l1"][k].get<double>(), term, 1e-5);
      sum += term;
    }
    EXPECT_NEAR(a["loss_terms"]["smooth_l1_sum"].get<double>(), sum, 1e-5);
    expect_close(floats_of(a["loss_terms"]["delta_minus_target"]), predicted - target, "delta - target", 1e-6);
    // The anchor's size and aspect ratio (height / width) describe its box (rounded to whole pixels).
    const double size = a["size"], ratio = a["aspect_ratio"];
    EXPECT_NEAR(std::sqrt(an["aw"].get<double>() * an["ah"].get<double>()), size, 0.05 * size);
    EXPECT_NEAR(an["ah"].get<double>() / an["aw"].get<double>(), ratio, 0.1 * ratio);
  }
  EXPECT_GT(non_square, 0);  // the bar's anchors: a width used for a height would show
  const auto& l = j["rpn_losses"];
  EXPECT_NEAR(l["loss_objectness"].get<double>(), t.rpn.losses.objectness.item<double>(), 1e-6);
  EXPECT_NEAR(l["loss_rpn_box_reg"].get<double>(), t.rpn.losses.box_reg.item<double>(), 1e-6);
  EXPECT_NEAR(l["loss_objectness"].get<double>(), t.losses.at("loss_objectness").item<double>(), 1e-6);
  EXPECT_NEAR(l["loss_rpn_box_reg"].get<double>(), t.losses.at("loss_rpn_box_reg").item<double>(), 1e-6);
  EXPECT_EQ(l["num_sampled"], 256);
}

TEST_F(TrainingViewTest, RoiSamplesAreSelectTrainingSamplesAndLossesFastRcnns) {
  const auto& j = figure("train/06_roi_samples");
  const auto& t = *training_;
  EXPECT_EQ(j["counts"]["rpn_proposals"], t.rpn.proposals[0].size(0));
  EXPECT_EQ(j["counts"]["sampled"], t.roi.labels.size(0));
  EXPECT_EQ(j["counts"]["foreground"], (t.roi.labels > 0).sum().item<int64_t>());
  EXPECT_EQ(j["counts"]["background"], (t.roi.labels == 0).sum().item<int64_t>());
  ASSERT_EQ(j["foreground_rois"].size(), size_t((t.roi.labels > 0).sum().item<int64_t>()));
  for (const auto& r : j["foreground_rois"]) {
    const int64_t i = r["sample_index"];
    expect_close(box_of(r["box"]), t.roi.proposals[i], "foreground RoI", 0);
    EXPECT_EQ(r["label"], t.roi.labels[i].item<int64_t>());
  }
  const auto iou = ops::box_iou(t.roi.proposals, t.targets.boxes);  // [S, G]
  ASSERT_GE(j["rois"].size(), 3u);
  bool background = false;
  for (const auto& r : j["rois"]) {
    const int64_t i = r["sample_index"], label = r["label"];
    EXPECT_EQ(label, t.roi.labels[i].item<int64_t>());
    expect_close(box_of(r["box"]), t.roi.proposals[i], "RoI box", 0);
    EXPECT_FLOAT_EQ(r["iou"].get<float>(), iou[i].max().item<float>());
    if (label > 0) {
      EXPECT_EQ(r["matched_gt"], t.roi.matched_idxs[i].item<int64_t>());
      EXPECT_GE(r["iou"].get<double>(), 0.5);
      expect_close(floats_of(r["regression_target"]), t.roi.regression_targets[i], "RoI regression target", 1e-6);
    } else {
      background = true;
      EXPECT_LT(r["iou"].get<double>(), 0.5);
    }
    const auto logits = floats_of(r["class_logits"]);
    expect_close(logits, t.class_logits[i], "class logits", 1e-6);
    expect_close(floats_of(r["softmax"]), torch::softmax(t.class_logits[i], 0), "softmax", 1e-6);
    EXPECT_NEAR(r["cross_entropy"].get<double>(),
                torch::logsumexp(logits.to(torch::kDouble), 0).item<double>() - logits[label].item<double>(), 1e-5);
  }
  EXPECT_TRUE(background);
  const auto box = fastrcnn_loss(t.class_logits, t.box_deltas, t.roi.labels, t.roi.regression_targets);
  EXPECT_NEAR(j["fastrcnn_loss"]["loss_classifier"].get<double>(), box.classifier.item<double>(), 1e-6);
  EXPECT_NEAR(j["fastrcnn_loss"]["loss_box_reg"].get<double>(), box.box_reg.item<double>(), 1e-6);
  EXPECT_NEAR(j["fastrcnn_loss"]["loss_classifier"].get<double>(), t.losses.at("loss_classifier").item<double>(), 1e-6);
  EXPECT_NEAR(j["fastrcnn_loss"]["loss_box_reg"].get<double>(), t.losses.at("loss_box_reg").item<double>(), 1e-6);
}

TEST_F(TrainingViewTest, MaskTargetsAreProjectMasksOnBoxesAndLossMaskRcnns) {
  const auto& j = figure("train/07_mask_targets");
  const auto& t = *training_;
  EXPECT_EQ(j["mask_size"], 28);
  const auto targets = project_masks_on_boxes(t.targets.masks, t.targets.boxes, torch::arange(2), 28);
  ASSERT_EQ(j["instances"].size(), 2u);
  for (int64_t g = 0; g < 2; ++g) {
    const auto& e = j["instances"][g];
    expect_close(box_of(e["box"]), t.targets.boxes[g], "mask box", 0);
    std::vector<float> values;
    for (const auto& row : e["mask_target"]) {
      for (const auto& v : row) values.push_back(v.get<float>());
    }
    ASSERT_EQ(values.size(), 28u * 28u);
    // Rounded to 4 decimals.
    expect_close(torch::tensor(values).view({28, 28}), targets[g], "mask target " + std::to_string(g), 5.1e-5);
  }
  // The bar fills its box: its target is ~1 everywhere; the disc's corners are empty.
  EXPECT_GT(targets[0].mean().item<float>(), 0.9);
  EXPECT_LT(targets[1][0][0].item<float>(), 0.05);
  const auto& roi = j["roi"];
  const int64_t i = roi["sample_index"];
  EXPECT_GT(t.roi.labels[i].item<int64_t>(), 0);
  expect_close(box_of(roi["box"]), t.roi.proposals[i], "mask RoI box", 0);
  EXPECT_NEAR(j["loss_mask"].get<double>(), t.losses.at("loss_mask").item<double>(), 1e-6);
}

// run_explain with --gt and no weights: the seven training figures and nothing of inference.
TEST(RunExplainTraining, GtWithoutWeightsWritesTheTrainingFiguresOnly) {
  testing::TestDir dir;
  const auto files = testing::write_tiny_coco(dir / "data");
  ExplainOptions options;
  options.input = files.image;
  options.gt = files.annotations;
  options.out_dir = dir / "out";
  options.min_size = 64;
  options.max_size = 96;
  options.threads = 2;
  options.progress = false;
  const auto result = run_explain(options);
  ASSERT_EQ(result.figures.size(), std::size(kFigures));
  for (size_t i = 0; i < std::size(kFigures); ++i) {
    EXPECT_EQ(result.figures[i].picture, std::string(kFigures[i]) + ".png");
    EXPECT_TRUE(fs::exists(dir / ("out/" + result.figures[i].picture)));
  }
  EXPECT_FALSE(fs::exists(dir / "out/infer"));
  const auto input = json::parse(testing::read_file_bytes(dir / "out/train/01_input.json"));
  EXPECT_EQ(input["min_size_used"], 64);
  EXPECT_EQ(input["resized_size"]["height"], 64);
  EXPECT_EQ(input["resized_size"]["width"], 85);  // 128 * 64 / 96, floored
}

}  // namespace
}  // namespace instseg
