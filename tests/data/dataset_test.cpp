#include "instseg/data/dataset.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "instseg/data/synthetic.h"
#include "instseg/data/transforms.h"

namespace instseg::data {
namespace {

TEST(MaskBoxes, TightBoxOnPixelEdges) {
  auto masks = torch::zeros({3, 5, 6}, torch::kUInt8);
  masks[0][2][3] = 1;                                             // one pixel
  masks[1].index_put_({torch::indexing::Slice(1, 4), 0}, 1);      // column 0, rows 1..3
  masks[1][4][5] = 1;                                             // and the far corner
  const auto boxes = mask_boxes(masks);
  EXPECT_TRUE(torch::equal(boxes, torch::tensor({{3.f, 2.f, 4.f, 3.f}, {0.f, 1.f, 6.f, 5.f}, {0.f, 0.f, 0.f, 0.f}})));
}

TEST(HorizontalFlip, MirrorsImageMasksAndBoxes) {
  SyntheticOptions options;
  options.num_images = 1;
  options.width = 96;  // not square, so a swapped axis would show
  options.height = 64;
  const Sample sample = SyntheticDataset(options).get(0);
  ASSERT_GT(sample.targets.boxes.size(0), 0);
  const Sample flipped = hflip(sample);
  const int64_t w = sample.image.size(2);
  for (int64_t x : {0L, 17L, w - 1}) {
    EXPECT_TRUE(torch::equal(flipped.image.select(2, x), sample.image.select(2, w - 1 - x)));
    EXPECT_TRUE(torch::equal(flipped.targets.masks.select(2, x), sample.targets.masks.select(2, w - 1 - x)));
  }
  // The flipped boxes are still the tight boxes of the flipped masks.
  EXPECT_TRUE(torch::equal(flipped.targets.boxes, mask_boxes(flipped.targets.masks)));
  EXPECT_FALSE(torch::equal(flipped.targets.boxes, sample.targets.boxes));
  EXPECT_TRUE(torch::equal(flipped.targets.labels, sample.targets.labels));
  const Sample twice = hflip(flipped);
  EXPECT_TRUE(torch::equal(twice.image, sample.image));
  EXPECT_TRUE(torch::equal(twice.targets.boxes, sample.targets.boxes));
}

TEST(HorizontalFlip, KeepsEmptyTargetsEmpty) {
  Sample sample{torch::rand({3, 4, 5}), empty_targets(4, 5), 1, ""};
  const Sample flipped = hflip(sample);
  EXPECT_EQ(flipped.targets.boxes.sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(flipped.targets.masks.sizes(), (std::vector<int64_t>{0, 4, 5}));
}

}  // namespace
}  // namespace instseg::data
