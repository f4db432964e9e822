#include "instseg/modeling/mask_rcnn.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

MaskRcnn make_model(const std::string& variant, int64_t min_size, int64_t max_size) {
  MaskRcnnOptions options;
  options.variant = variant == "v2" ? MaskRcnnVariant::kV2 : MaskRcnnVariant::kV1;
  options.transform.min_size = {min_size};
  options.transform.max_size = max_size;
  return MaskRcnn(options);
}

class MaskRcnnParity : public ::testing::TestWithParam<const char*> {};

TEST_P(MaskRcnnParity, StateDictKeysAndShapesMatchTorchvision) {
  const std::string variant = GetParam();
  const auto weights = testing::end_to_end_reference("weights_" + variant);
  auto model = make_model(variant, 800, 1333);
  std::map<std::string, torch::Tensor> ours;
  for (const auto& p : model->named_parameters()) ours[p.key()] = p.value();
  for (const auto& b : model->named_buffers()) {
    if (!testing::is_batch_counter(b.key())) ours[b.key()] = b.value();
  }
  for (const auto& [key, value] : weights) {
    const auto it = ours.find(key);
    if (it == ours.end()) {
      ADD_FAILURE() << "model has no " << key;
    } else {
      EXPECT_EQ(it->second.sizes(), value.sizes()) << key;
    }
  }
  for (const auto& [key, value] : ours) EXPECT_TRUE(weights.count(key)) << "torchvision has no " << key;
}

// Acceptance: every detection pairs with a torchvision detection of the same label, box IoU >=
// 0.99 and score within 1e-3 (one detection may differ at the score threshold or the 100 cut);
// pasted masks agree to a mean absolute difference <= 1e-3.
void expect_matches_reference(const Detections& ours, const testing::TensorDict& ref, int image) {
  const auto key = [&](const char* name) { return std::string(name) + "_" + std::to_string(image); };
  const auto& boxes = ref.at(key("boxes"));
  ASSERT_GT(boxes.size(0), 5) << "the reference should have several detections";
  const auto m = testing::match_detections(ours.boxes, ours.scores, ours.labels, boxes,
                                           ref.at(key("scores")), ref.at(key("labels")));
  EXPECT_LE(m.unmatched_ours, 1) << "image " << image;
  EXPECT_LE(m.unmatched_theirs, 1) << "image " << image;
  EXPECT_LE(m.max_score_diff, 1e-3) << "image " << image;
  EXPECT_GE(m.min_iou, 0.99) << "image " << image;

  const auto& masks = ref.at(key("masks"));  // the first few torchvision masks
  ASSERT_EQ(ours.masks.size(0), ours.boxes.size(0));
  EXPECT_EQ(ours.masks.sizes().slice(1), masks.sizes().slice(1));
  int compared = 0;
  for (const auto& [mine, theirs] : m.pairs) {
    if (theirs >= masks.size(0)) continue;
    const double mean_diff = (ours.masks[mine] - masks[theirs]).abs().mean().item<double>();
    EXPECT_LE(mean_diff, 1e-3) << "image " << image << " detection " << mine;
    ++compared;
  }
  EXPECT_GE(compared, masks.size(0) - 1) << "image " << image;
  EXPECT_GT(masks.max().item<float>(), 0.5f) << "reference masks are not trivial";
}

TEST_P(MaskRcnnParity, DetectionsAndMasksMatchTorchvision) {
  const std::string variant = GetParam();
  const auto weights = testing::end_to_end_reference("weights_" + variant);
  const auto ref = testing::end_to_end_reference("e2e_" + variant);
  const std::vector<torch::Tensor> images{ref.at("image_0"), ref.at("image_1"), ref.at("image_2")};

  // torchvision's default size for the first image; the other two batched at a smaller size.
  auto large = make_model(variant, 800, 1333);
  testing::copy_state_counted(*large, weights);
  large->eval();
  const auto first = large->predict({images[0]});
  ASSERT_EQ(first.size(), 1u);
  expect_matches_reference(first[0], ref, 0);

  auto small = make_model(variant, 384, 640);
  testing::copy_state_counted(*small, weights);
  small->eval();
  const auto rest = small->predict({images[1], images[2]});
  ASSERT_EQ(rest.size(), 2u);
  expect_matches_reference(rest[0], ref, 1);
  expect_matches_reference(rest[1], ref, 2);
}

INSTANTIATE_TEST_SUITE_P(Variants, MaskRcnnParity, ::testing::Values("v1", "v2"));

TEST(MaskRcnn, PredictRefusesTrainingMode) {
  auto model = make_model("v1", 64, 96);
  model->train();
  EXPECT_THROW(model->predict({torch::rand({3, 40, 50})}), c10::Error);
}

}  // namespace
}  // namespace instseg
