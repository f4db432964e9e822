#include "instseg/modeling/mask_rcnn.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

using testing::expect_matches_reference;
using testing::input_image;

MaskRcnn make_model(const std::string& variant, int64_t min_size, int64_t max_size) {
  MaskRcnnOptions options = variant == "v2" ? MaskRcnnOptions::v2() : MaskRcnnOptions::v1();
  options.transform.min_size = {min_size};
  options.transform.max_size = max_size;
  return MaskRcnn(options);
}

class MaskRcnnParity : public ::testing::TestWithParam<const char*> {};

TEST_P(MaskRcnnParity, StateDictKeysAndShapesMatchTorchvision) {
  const std::string variant = GetParam();
  const auto weights = testing::end_to_end_reference("weights_" + variant);
  auto model = make_model(variant, 800, 1333);
  testing::expect_same_keys_and_shapes(*model, weights);
}

// The same comparison for predict's fused path (MaskRcnn::prepare_inference in fp32): folded norms,
// oneDNN kernels, channels-last features and per-class mask logits must stay within the same
// tolerances as the module code.
class FusedParity : public ::testing::TestWithParam<std::tuple<const char*, bool>> {};

void check_detections_and_masks(const std::string& variant, bool fused) {
  const auto weights = testing::end_to_end_reference("weights_" + variant);
  const auto ref = testing::end_to_end_reference("e2e_" + variant);
  std::vector<torch::Tensor> images;
  for (const char* name : {"image_0", "image_1", "image_2"}) images.push_back(input_image(ref.at(name)));

  // The first image alone: v1 at torchvision's default size (the suite's one full-size end-to-end
  // run), v2 smaller; the other two (at half resolution) batched at a smaller size.
  auto large = variant == "v1" ? make_model(variant, 800, 1333) : make_model(variant, 512, 853);
  testing::copy_state_counted(*large, weights);
  large->eval();
  if (fused) large->prepare_inference();
  ASSERT_EQ(large->inference_prepared(), fused);
  const auto first = large->predict_box_masks({images[0]});
  ASSERT_EQ(first.size(), 1u);
  expect_matches_reference(first[0], large->mask_paster(first[0], images[0].size(1), images[0].size(2)), ref, 0);

  auto small = variant == "v1" ? make_model(variant, 384, 640) : make_model(variant, 352, 587);
  testing::copy_state_counted(*small, weights);
  small->eval();
  if (fused) small->prepare_inference();
  const std::vector<torch::Tensor> batch{images[1], images[2]};
  const auto rest = small->predict_box_masks(batch);
  ASSERT_EQ(rest.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    expect_matches_reference(rest[i], small->mask_paster(rest[i], batch[i].size(1), batch[i].size(2)), ref, i + 1);
  }
  // predict() is predict_box_masks() with each mask pasted into its image.
  const auto pasted = small->predict(batch);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::equal(pasted[i].boxes, rest[i].boxes)) << i;
    EXPECT_TRUE(torch::equal(pasted[i].masks, paste_masks_in_image(rest[i].masks, rest[i].boxes, batch[i].size(1),
                                                                   batch[i].size(2))))
        << i;
  }
}

TEST_P(MaskRcnnParity, DetectionsAndMasksMatchTorchvision) { check_detections_and_masks(GetParam(), false); }

TEST_P(FusedParity, DetectionsAndMasksMatchTorchvision) {
  check_detections_and_masks(std::get<0>(GetParam()), std::get<1>(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Variants, MaskRcnnParity, ::testing::Values("v1", "v2"));
INSTANTIATE_TEST_SUITE_P(Variants, FusedParity, ::testing::Combine(::testing::Values("v1", "v2"), ::testing::Values(true)));

TEST(MaskRcnn, PredictRefusesTrainingMode) {
  auto model = make_model("v1", 64, 96);
  model->train();
  EXPECT_THROW(model->predict({torch::rand({3, 40, 50})}), c10::Error);
}

}  // namespace
}  // namespace instseg
