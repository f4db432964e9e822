// COCO results from per-box masks (predict's path: pasted, binarised and encoded one at a time)
// are the results of the whole [K, 1, H, W] paste, RLE for RLE.
#include "instseg/engine/results_json.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/modeling/roi_heads/paste_masks.h"

namespace instseg {
namespace {

Detections random_detections(int64_t count, int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  Detections d;
  // Boxes anywhere from partly outside the image to wholly outside it, and a whole-image one.
  const auto xy = torch::rand({count, 2}) * torch::tensor({w * 1.4f, h * 1.4f}) - torch::tensor({w * 0.2f, h * 0.2f});
  const auto size = torch::rand({count, 2}) * torch::tensor({w * 0.7f, h * 0.7f});
  d.boxes = torch::cat({xy, xy + size}, 1);
  if (count > 0) d.boxes[0] = torch::tensor({0.f, 0.f, float(w), float(h)});
  d.scores = std::get<0>(torch::rand({count}).sort(0, /*descending=*/true));
  d.labels = torch::randint(1, 5, {count}, torch::kLong);
  d.masks = torch::rand({count, 1, 28, 28});  // probabilities around the 0.5 threshold
  return d;
}

void expect_same_results(const std::vector<coco::Detection>& a, const std::vector<coco::Detection>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("detection " + std::to_string(i));
    EXPECT_EQ(a[i].image_id, b[i].image_id);
    EXPECT_EQ(a[i].category_id, b[i].category_id);
    EXPECT_EQ(a[i].bbox, b[i].bbox);
    EXPECT_EQ(a[i].score, b[i].score);
    ASSERT_TRUE(a[i].mask && b[i].mask);
    EXPECT_EQ(a[i].mask->h, b[i].mask->h);
    EXPECT_EQ(a[i].mask->w, b[i].mask->w);
    EXPECT_EQ(a[i].mask->counts, b[i].mask->counts);
  }
}

TEST(ResultsJson, PerBoxMasksEncodeAsTheWholePaste) {
  for (const auto paste : {MaskPaste::kTorchvision, MaskPaste::kAligned}) {
    for (const auto [h, w] : {std::pair<int64_t, int64_t>{61, 83}, {1, 40}, {40, 1}}) {
      SCOPED_TRACE(std::to_string(h) + " x " + std::to_string(w));
      const Detections box_masks = random_detections(30, h, w, /*seed=*/static_cast<uint64_t>(h * 1000 + w));
      Detections pasted = box_masks;
      pasted.masks = paste == MaskPaste::kAligned ? paste_masks_aligned(box_masks.masks, box_masks.boxes, h, w)
                                                  : paste_masks_in_image(box_masks.masks, box_masks.boxes, h, w);
      const MaskPaster paster(box_masks.masks, box_masks.boxes, h, w, paste);
      expect_same_results(to_coco_detections(7, pasted), to_coco_detections(7, box_masks, paster));
      // And the JSON text built from either.
      ResultsJsonWriter whole, per_box;
      whole.add(7, "x.jpg", pasted);
      per_box.add(to_coco_detections(7, box_masks, paster), "x.jpg");
      EXPECT_EQ(whole.dump(), per_box.dump());
    }
  }
}

TEST(ResultsJson, NoDetectionsGiveNoResults) {
  const Detections none = random_detections(0, 10, 12, 1);
  const MaskPaster paster(none.masks, none.boxes, 10, 12, MaskPaste::kTorchvision);
  EXPECT_TRUE(to_coco_detections(1, none, paster).empty());
}

}  // namespace
}  // namespace instseg
