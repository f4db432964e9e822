#include "instseg/data/synthetic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "instseg/errors.h"

namespace instseg::data {
namespace {

using ::testing::HasSubstr;

bool same_sample(const Sample& a, const Sample& b) {
  return torch::equal(a.image, b.image) && torch::equal(a.targets.masks, b.targets.masks) &&
         torch::equal(a.targets.boxes, b.targets.boxes) && torch::equal(a.targets.labels, b.targets.labels);
}

TEST(Synthetic, SameSeedSameImagesInAnyOrder) {
  SyntheticOptions options;
  options.num_images = 10;
  options.seed = 7;
  const SyntheticDataset a(options), b(options);
  const Sample late_first = b.get(9);  // index 9 made without 0..8 before it
  for (int64_t i = 0; i < 10; ++i) EXPECT_TRUE(same_sample(a.get(i), b.get(i))) << i;
  EXPECT_TRUE(same_sample(late_first, a.get(9)));
  EXPECT_FALSE(torch::equal(a.get(0).image, a.get(1).image));
  options.seed = 8;
  EXPECT_FALSE(torch::equal(SyntheticDataset(options).get(0).image, a.get(0).image));
}

TEST(Synthetic, MasksBoxesAndLabelsAreConsistent) {
  SyntheticOptions options;
  options.num_images = 24;
  const SyntheticDataset dataset(options);
  std::set<int64_t> classes_seen;
  int64_t instances = 0, overlapping = 0;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    SCOPED_TRACE(i);
    const Sample s = dataset.get(i);
    const auto& t = s.targets;
    ASSERT_EQ(s.image.sizes(), (std::vector<int64_t>{3, 256, 256}));
    EXPECT_EQ(s.image_id, i + 1);
    // 8-bit exact values in [0, 1], so the PNG export loses nothing.
    EXPECT_TRUE(torch::equal(s.image, s.image.mul(255).round().div(255)));
    EXPECT_GE(s.image.min().item<float>(), 0.f);
    EXPECT_LE(s.image.max().item<float>(), 1.f);
    const int64_t g = t.labels.size(0);
    EXPECT_GE(g, 1);
    EXPECT_LE(g, options.max_objects);
    ASSERT_EQ(t.masks.sizes(), (std::vector<int64_t>{g, 256, 256}));
    EXPECT_EQ(t.masks.dtype(), torch::kUInt8);
    EXPECT_LE(t.masks.max().item<int>(), 1);
    // No pixel belongs to two instances; every instance keeps enough visible pixels.
    EXPECT_LE(t.masks.sum(0).max().item<int64_t>(), 1);
    EXPECT_GE(t.masks.flatten(1).sum(1).min().item<int64_t>(), options.min_visible_area);
    EXPECT_TRUE(torch::equal(t.boxes, mask_boxes(t.masks)));
    EXPECT_GE(t.labels.min().item<int64_t>(), 1);
    EXPECT_LE(t.labels.max().item<int64_t>(), 4);
    for (int64_t k = 0; k < g; ++k) classes_seen.insert(t.labels[k].item<int64_t>());
    instances += g;
    // A later (upper) shape reaching into an earlier shape's box: shapes do overlap.
    for (int64_t k = 0; k + 1 < g; ++k) {
      const auto b = t.boxes[k];
      const auto later = t.masks.slice(0, k + 1).sum(0).slice(0, b[1].item<int64_t>(), b[3].item<int64_t>())
                             .slice(1, b[0].item<int64_t>(), b[2].item<int64_t>());
      overlapping += later.any().item<bool>();
    }
  }
  EXPECT_EQ(classes_seen, (std::set<int64_t>{1, 2, 3, 4}));
  EXPECT_GE(instances, 24 * 2);  // 2..6 per image on average, not just the minimum
  EXPECT_GT(overlapping, 0);
}

TEST(Synthetic, ValidateNamesTheField) {
  SyntheticOptions options;
  options.max_objects = 1;
  try {
    options.validate();
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("synthetic.max_objects"));
  }
  options = SyntheticOptions{};
  options.min_size = 0;
  EXPECT_THROW(SyntheticDataset{options}, ConfigError);
}

}  // namespace
}  // namespace instseg::data
