// predict's fused path (MaskRcnn::prepare_inference) against the stages' module code on the same
// weights and inputs, stage by stage (end to end against torchvision: mask_rcnn_test.cpp).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "instseg/modeling/mask_rcnn.h"
#include "instseg/structures/detections.h"

namespace instseg {
namespace {

// A v1 / v2 model with random weights and batch-norm statistics (not identities, so that
// folding is exercised), in eval mode.
MaskRcnn random_model(const std::string& variant, int depth) {
  torch::manual_seed(3);
  MaskRcnnOptions options = variant == "v2" ? MaskRcnnOptions::v2() : MaskRcnnOptions::v1();
  options.backbone.depth = depth;
  options.transform.min_size = {160};
  options.transform.max_size = 256;
  MaskRcnn model(options);
  torch::NoGradGuard no_grad;
  for (auto& b : model->named_buffers()) {
    if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.1, 0.1);
    if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
    if (b.key().find(".weight") != std::string::npos && b.value().dim() == 1) b.value().uniform_(0.5, 1.5);
    if (b.key().find(".bias") != std::string::npos && b.value().dim() == 1) b.value().uniform_(-0.2, 0.2);
  }
  for (auto& p : model->named_parameters()) {
    if (p.value().dim() == 1 && p.key().find("bn") != std::string::npos) p.value().uniform_(0.5, 1.5);
  }
  model->eval();
  return model;
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.numel() == 0 && b.numel() == 0) return 0.0;
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>() /
         std::max(1e-12, b.to(torch::kDouble).abs().max().item<double>());
}

// For each of `ours`' detections, the index of the reference detection it is: the same label, the
// closest box among those with the same score to 1e-5. Random weights give many scores equal to
// the printed digits, and rounding differences between kernels may order such ties differently.
torch::Tensor match_detections(const Detections& ours, const Detections& reference) {
  const auto n = ours.scores.size(0);
  std::vector<int64_t> order;
  std::vector<bool> used(static_cast<size_t>(reference.scores.size(0)), false);
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = -1;
    double best_distance = 0.0;
    for (int64_t j = 0; j < reference.scores.size(0); ++j) {
      if (used[static_cast<size_t>(j)] || reference.labels[j].item<int64_t>() != ours.labels[i].item<int64_t>() ||
          std::abs(reference.scores[j].item<double>() - ours.scores[i].item<double>()) > 1e-5) {
        continue;
      }
      const double distance = (reference.boxes[j] - ours.boxes[i]).abs().max().item<double>();
      if (best < 0 || distance < best_distance) {
        best = j;
        best_distance = distance;
      }
    }
    if (best < 0) best = i;  // no candidate: compared in place, and the checks below fail
    used[static_cast<size_t>(best)] = true;
    order.push_back(best);
  }
  return torch::tensor(order, torch::kLong);
}

class FusedStages : public ::testing::TestWithParam<std::tuple<const char*, int>> {};

TEST_P(FusedStages, EachStageEqualsItsModuleCode) {
  const auto [variant, depth] = GetParam();
  auto model = random_model(variant, depth);
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({2, 3, 160, 224});
  const auto reference = model->backbone()->forward(images);
  std::vector<torch::Tensor> levels;
  for (const auto& f : reference) levels.push_back(f.tensor);
  const auto [ref_objectness, ref_deltas] = model->rpn()->head->forward(levels);
  // Proposals of all sizes, so that every FPN level pools some.
  const std::vector<std::array<int64_t, 2>> sizes{{160, 224}, {160, 224}};
  std::vector<torch::Tensor> proposals;
  for (int i = 0; i < 2; ++i) {
    const auto xy = torch::rand({60, 2}) * torch::tensor({200.0, 140.0});
    const auto wh = torch::exp(torch::rand({60, 2}) * 5.5) + 1;
    proposals.push_back(torch::cat({xy, xy + wh}, 1).clamp_max(220));
  }
  const auto ref_box_pool = model->roi_heads()->box_roi_pool().forward(reference, proposals, sizes);
  const auto ref_boxes = model->roi_heads()->predict_boxes(reference, proposals, sizes);
  const auto ref_heads = model->roi_heads()->inspect(reference, proposals, sizes);

  model->prepare_inference();
  const auto fused = model->backbone()->forward(images);
  ASSERT_EQ(fused.size(), reference.size());
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_EQ(fused[i].name, reference[i].name);
    EXPECT_TRUE(fused[i].tensor.is_contiguous(at::MemoryFormat::ChannelsLast)) << fused[i].name;
    EXPECT_LT(relative_difference(fused[i].tensor, reference[i].tensor), 1e-5) << "level " << fused[i].name;
  }
  const auto [objectness, deltas] = model->rpn()->head->forward(levels);
  for (size_t i = 0; i < objectness.size(); ++i) {
    EXPECT_LT(relative_difference(objectness[i], ref_objectness[i]), 1e-5) << "objectness " << i;
    EXPECT_LT(relative_difference(deltas[i], ref_deltas[i]), 1e-5) << "deltas " << i;
  }
  // The RoI heads on the module's features, so that only the heads differ.
  const auto box_pool = model->roi_heads()->box_roi_pool().forward(fused, proposals, sizes);
  EXPECT_TRUE(box_pool.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_LT(relative_difference(box_pool, ref_box_pool), 1e-5) << "box RoIAlign";
  const auto boxes = model->roi_heads()->predict_boxes(reference, proposals, sizes);
  EXPECT_LT(relative_difference(boxes.first, ref_boxes.first), 1e-4) << "class logits";
  EXPECT_LT(relative_difference(boxes.second, ref_boxes.second), 1e-4) << "box deltas";
  const auto heads = model->roi_heads()->inspect(reference, proposals, sizes);
  // The masks' tolerance: float rounding of logits as large as the module's, through the sigmoid
  // (slope <= 1/4). Random weights give logits of hundreds here; the four Winograd convolutions
  // of the mask head (whose rounding depends on how oneDNN blocks the RoIs) reach ~1.2e-5 of that.
  std::vector<torch::Tensor> detected;
  for (const auto& d : ref_heads.detections) detected.push_back(d.boxes);
  model->drop_prepared_inference();
  const auto module_logits = model->roi_heads()->predict_mask_logits(reference, detected, sizes);
  const double logit_scale = module_logits.numel() > 0 ? module_logits.abs().max().item<double>() : 0.0;
  model->prepare_inference();
  for (size_t i = 0; i < heads.detections.size(); ++i) {
    const auto& d = heads.detections[i];
    const auto& r = ref_heads.detections[i];
    ASSERT_EQ(d.labels.sizes(), r.labels.sizes());
    EXPECT_TRUE(torch::equal(d.labels, r.labels));
    const auto order = match_detections(d, r);
    EXPECT_LT(relative_difference(d.scores, r.scores.index_select(0, order)), 1e-4);
    EXPECT_LT(relative_difference(d.boxes, r.boxes.index_select(0, order)), 1e-4);
    if (d.masks.numel() > 0) {
      EXPECT_LT((d.masks - r.masks.index_select(0, order)).abs().max().item<double>(), 2e-5 * logit_scale / 4)
          << "mask probabilities";
    }
  }
}

// A group-norm backbone and heads (training from scratch) cannot be folded: those stages keep their
// module code, the rest is fused, and predict's results are the module path's.
TEST(FusedInference, GroupNormStagesKeepTheirModuleCode) {
  torch::manual_seed(5);
  MaskRcnnOptions options = MaskRcnnOptions::v1();
  options.backbone.depth = 18;
  options.backbone.norm = NormKind::kGroupNorm;
  options.roi_heads.head_norm = NormKind::kGroupNorm;
  options.roi_heads.score_thresh = 0.001;  // random weights: class scores near 1/91
  options.roi_heads.detections_per_img = 20;
  options.transform.min_size = {160};
  options.transform.max_size = 256;
  MaskRcnn model(options);
  model->eval();
  const std::vector<torch::Tensor> images{torch::rand({3, 150, 200})};
  const auto reference = model->predict(images);
  model->prepare_inference();
  EXPECT_TRUE(model->inference_prepared());
  const auto fused = model->predict(images);
  ASSERT_EQ(fused[0].labels.sizes(), reference[0].labels.sizes());
  ASSERT_GT(reference[0].labels.numel(), 0);
  EXPECT_TRUE(torch::equal(fused[0].labels, reference[0].labels));
  EXPECT_LT(relative_difference(fused[0].boxes, reference[0].boxes), 1e-4);
  EXPECT_LT(relative_difference(fused[0].scores, reference[0].scores), 1e-4);
}

// bf16: the same stages within bfloat16's rounding (8 bits of mantissa: ~0.4% per operation, a few
// percent through a network), and training drops the fused path.
TEST(FusedInference, Bf16StagesStayNearFp32AndTrainingDropsThePath) {
  auto model = random_model("v1", 50);
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({1, 3, 160, 224});
  const auto reference = model->backbone()->forward(images);
  model->prepare_inference(ops::InferencePrecision::kBFloat16);
  const auto fused = model->backbone()->forward(images);
  for (size_t i = 0; i < fused.size(); ++i) {
    EXPECT_EQ(fused[i].tensor.scalar_type(), torch::kFloat) << fused[i].name;
    const double error = relative_difference(fused[i].tensor, reference[i].tensor);
    EXPECT_LT(error, 0.05) << "level " << fused[i].name;
    EXPECT_GT(error, 1e-5) << "level " << fused[i].name << ": bf16 should not be exact";
  }
  model->train();
  EXPECT_FALSE(model->inference_prepared());
  model->eval();
  EXPECT_TRUE(torch::equal(model->backbone()->forward(images)[0].tensor, reference[0].tensor));
}

INSTANTIATE_TEST_SUITE_P(Variants, FusedStages,
                         ::testing::Combine(::testing::Values("v1", "v2"), ::testing::Values(18, 50)));

}  // namespace
}  // namespace instseg
