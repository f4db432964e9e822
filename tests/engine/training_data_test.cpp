// TrainingData: the splits a config describes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "instseg/data/dataset.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/training_data.h"
#include "support/input_error.h"
#include "support/reference.h"

namespace instseg {
namespace {

int64_t object_count(const data::Dataset& dataset) {
  int64_t count = 0;
  for (int64_t i = 0; i < dataset.size(); ++i) count += dataset.get(i).targets.labels.size(0);
  return count;
}

TEST(TrainingData, SyntheticValidationSplitCanHaveItsOwnObjectCount) {
  DataConfig config;
  config.kind = "synthetic";
  config.synthetic_train_images = 20;
  config.synthetic_val_images = 20;
  config.synthetic_image_size = 128;
  config.synthetic_min_objects = config.synthetic_max_objects = 3;
  config.synthetic_val_min_objects = config.synthetic_val_max_objects = 1;
  const TrainingData split(config);
  for (int64_t i = 0; i < split.val_set()->size(); ++i) {
    EXPECT_EQ(split.val_set()->get(i).targets.labels.size(0), 1) << "validation image " << i;
  }
  // Three shapes are placed unless occlusion rejects one in every try: nearly always.
  EXPECT_GT(object_count(*split.train_set()), 2 * split.train_set()->size());

  // Left at -1, the validation split follows the training split's count.
  config.synthetic_val_min_objects = config.synthetic_val_max_objects = -1;
  const TrainingData same(config);
  EXPECT_GT(object_count(*same.val_set()), 2 * same.val_set()->size());
}

// The training readers take the config's pixel limit and name its key, not predict's option.
TEST(TrainingData, ImagesAreReadUnderTheConfigsPixelLimit) {
  DataConfig config;
  config.kind = "coco";
  config.train_annotations = testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json");
  config.train_images = testing::source_path("datasets/tiny_coco/val2017");
  const TrainingData defaults(config);
  const data::Sample sample = defaults.train_set()->get(0);
  const int64_t pixels = sample.image.size(1) * sample.image.size(2);

  config.max_image_pixels = static_cast<int>(pixels - 1);
  const TrainingData limited(config);
  const std::string message = testing::input_error_of([&] { limited.train_set()->get(0); });
  EXPECT_THAT(message, ::testing::HasSubstr(sample.file));
  EXPECT_THAT(message, ::testing::HasSubstr("exceeds the limit of " + std::to_string(pixels - 1) + " pixels"));
  EXPECT_THAT(message, ::testing::HasSubstr("(data.max_image_pixels)"));

  config.max_image_pixels = static_cast<int>(pixels);
  EXPECT_EQ(TrainingData(config).train_set()->get(0).image.sizes(), sample.image.sizes());
}

}  // namespace
}  // namespace instseg
