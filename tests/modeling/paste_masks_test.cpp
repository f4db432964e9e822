#include "instseg/modeling/roi_heads/paste_masks.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "modeling/rcnn_reference.h"

namespace instseg {
namespace {

TEST(PasteMasks, MatchesTorchvisionOnBorderCrossingTinyAndWholeImageBoxes) {
  const auto ref = testing::end_to_end_reference("paste");
  const auto size = ref.at("size");
  const auto pasted = paste_masks_in_image(ref.at("masks"), ref.at("boxes"), size[0].item<int64_t>(),
                                           size[1].item<int64_t>());
  const auto& expected = ref.at("pasted");
  ASSERT_EQ(pasted.sizes(), expected.sizes());
  for (int64_t k = 0; k < expected.size(0); ++k) {
    EXPECT_LT(testing::max_abs_diff(pasted[k], expected[k]), 1e-5) << "mask " << k;  // float32 rounding order
    // Same support: a pixel is written exactly where torchvision writes one.
    EXPECT_TRUE(torch::equal(pasted[k] != 0, expected[k] != 0)) << "mask " << k;
  }
}

TEST(PasteMasks, ConstantMaskFillsItsEnlargedBox) {
  // A box of 28 px enlarged by 30/28 spans 30 px: x 10 - 1 .. 38 + 1 -> pixels 9..39 inclusive.
  const auto masks = torch::ones({1, 1, 28, 28});
  const auto boxes = torch::tensor({10.f, 20.f, 38.f, 48.f}).view({1, 4});
  const auto pasted = paste_masks_in_image(masks, boxes, 64, 64)[0][0];
  // Inside, away from the zero padding's influence, the mask is 1; outside the box it is 0.
  EXPECT_FLOAT_EQ(pasted[34][24].item<float>(), 1.f);
  EXPECT_EQ(pasted[18].sum().item<float>(), 0.f);
  EXPECT_EQ(pasted.index({torch::indexing::Slice(), 40}).sum().item<float>(), 0.f);
  // The corner pixel samples the zero padding; its neighbour blends padding and mask with the
  // half-pixel rule: source 1.5 * 30 / 31 - 0.5 along each axis.
  EXPECT_EQ(pasted[19][9].item<float>(), 0.f);
  const float w = 1.5f * 30 / 31 - 0.5f;
  EXPECT_NEAR(pasted[20][10].item<float>(), w * w, 1e-6);
}

TEST(PasteMasks, AlignedEqualsGridSampleAtTheTargetsSamplingPoints) {
  const auto ref = testing::end_to_end_reference("paste");
  const auto size = ref.at("size");
  const auto pasted = paste_masks_aligned(ref.at("masks"), ref.at("boxes"), size[0].item<int64_t>(),
                                          size[1].item<int64_t>());
  const auto& expected = ref.at("pasted_aligned");
  ASSERT_EQ(pasted.sizes(), expected.sizes());
  for (int64_t k = 0; k < expected.size(0); ++k) {
    EXPECT_LT(testing::max_abs_diff(pasted[k], expected[k]), 1e-5) << "mask " << k;
  }
}

// Ground-truth shapes of 23-47 px -> their 28x28 training targets (torchvision's
// project_masks_on_boxes on COCO-style boxes) -> pasted back and thresholded at 0.5, as predict
// does. Pasted where the targets were sampled, curved shapes come back much closer than with
// torchvision's whole-pixel paste.
TEST(PasteMasks, AlignedRoundTripRecoversTheShapesBetterThanTorchvision) {
  const auto ref = testing::end_to_end_reference("paste_round_trip");
  const auto& gt = ref.at("gt");
  const int64_t h = gt.size(1), w = gt.size(2);
  const auto targets = ref.at("targets").unsqueeze(1);
  const auto torchvision_paste = paste_masks_in_image(targets, ref.at("boxes"), h, w);
  EXPECT_LT(testing::max_abs_diff(torchvision_paste, ref.at("pasted")), 1e-5);
  const auto aligned = paste_masks_aligned(targets, ref.at("boxes"), h, w);
  const auto iou = [&](const torch::Tensor& pasted, int64_t k) {
    const auto a = pasted[k][0] > 0.5, b = gt[k] != 0;
    return (a & b).sum().item<double>() / (a | b).sum().item<double>();
  };
  for (const int64_t k : {0, 1, 3}) {  // disc, diamond, ellipse
    const double ours = iou(aligned, k), theirs = iou(torchvision_paste, k);
    EXPECT_GT(ours, 0.97) << "shape " << k;
    EXPECT_GT(ours, theirs + 0.02) << "shape " << k << ": aligned " << ours << ", torchvision " << theirs;
  }
  // The 47 x 23 rectangle fills its box, and the target's samples sit half a pixel right of and
  // below the pixel centres (RoIAlign with aligned=False): its first column and row fall on the
  // mask's edge, where the paste reads half of an edge cell (<= 0.5), and are lost. (Torchvision's
  // paste stretches every mask by about a pixel, which happens to fit this shape.)
  EXPECT_NEAR(iou(aligned, 2), 46.0 * 22 / (47 * 23), 1e-12);
}

TEST(PasteMasks, NoDetectionsGiveAnEmptyBatch) {
  const auto pasted = paste_masks_in_image(torch::zeros({0, 1, 28, 28}), torch::zeros({0, 4}), 5, 7);
  EXPECT_EQ(pasted.sizes(), (std::vector<int64_t>{0, 1, 5, 7}));
  const auto aligned = paste_masks_aligned(torch::zeros({0, 1, 28, 28}), torch::zeros({0, 4}), 5, 7);
  EXPECT_EQ(aligned.sizes(), (std::vector<int64_t>{0, 1, 5, 7}));
}

// MaskPaster (predict's path) gives each box's region of the whole paste, and nothing but zeros
// lies outside the regions: the same values, one box at a time.
TEST(MaskPaster, RegionsAreTheWholePasteOneBoxAtATime) {
  const auto ref = testing::end_to_end_reference("paste");
  const int64_t h = ref.at("size")[0].item<int64_t>(), w = ref.at("size")[1].item<int64_t>();
  torch::manual_seed(3);
  // The reference's boxes (border-crossing, tiny, whole-image) and random ones, some outside.
  const auto random_boxes = [&](int64_t n) {
    const auto xy = torch::rand({n, 2}) * torch::tensor({w * 1.4f, h * 1.4f}) - torch::tensor({w * 0.2f, h * 0.2f});
    const auto size = torch::rand({n, 2}) * torch::tensor({w * 0.6f, h * 0.6f});
    return torch::cat({xy, xy + size}, 1);
  };
  const auto boxes = torch::cat({ref.at("boxes"), random_boxes(40)});
  const auto masks = torch::cat({ref.at("masks"), torch::rand({40, 1, 28, 28})});
  for (const auto paste : {MaskPaste::kTorchvision, MaskPaste::kAligned}) {
    const auto whole = paste == MaskPaste::kAligned ? paste_masks_aligned(masks, boxes, h, w)
                                                    : paste_masks_in_image(masks, boxes, h, w);
    const MaskPaster paster(masks, boxes, h, w, paste);
    ASSERT_EQ(paster.size(), boxes.size(0));
    int64_t outside = 0;
    for (int64_t k = 0; k < paster.size(); ++k) {
      SCOPED_TRACE("mask " + std::to_string(k));
      const MaskRegion region = paster.paste(k);
      auto assembled = torch::zeros({h, w});
      const int64_t rows = region.probs.size(0), cols = region.probs.size(1);
      outside += rows * cols == 0;
      ASSERT_GE(region.x, 0);
      ASSERT_GE(region.y, 0);
      ASSERT_LE(region.x + cols, w);
      ASSERT_LE(region.y + rows, h);
      using torch::indexing::Slice;
      assembled.index({Slice(region.y, region.y + rows), Slice(region.x, region.x + cols)}).copy_(region.probs);
      EXPECT_TRUE(torch::equal(assembled, whole[k][0]));  // bit for bit, zeros around
    }
    EXPECT_GT(outside, 0);  // the random boxes include some wholly outside the image
  }
}

// The region follows the box, not the image: a 20 px box in a 30000 x 40000 (W x H) image (whose whole
// [1, 1, H, W] paste would take 4.8 GB) pastes into a few hundred floats.
TEST(MaskPaster, MemoryFollowsTheBoxNotTheImage) {
  const auto masks = torch::rand({1, 1, 28, 28});
  const auto boxes = torch::tensor({{29000.f, 39000.f, 29020.f, 39020.f}});
  for (const auto paste : {MaskPaste::kTorchvision, MaskPaste::kAligned}) {
    const MaskRegion region = MaskPaster(masks, boxes, /*height=*/40000, /*width=*/30000, paste).paste(0);
    EXPECT_LE(region.probs.size(0), 23);
    EXPECT_LE(region.probs.size(1), 23);
    EXPECT_GE(region.probs.size(0), 20);
    EXPECT_NEAR(region.x, 29000, 2);
    EXPECT_NEAR(region.y, 39000, 2);
  }
}

}  // namespace
}  // namespace instseg
