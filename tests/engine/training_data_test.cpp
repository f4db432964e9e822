// TrainingData: the splits a config describes.
#include <gtest/gtest.h>

#include "instseg/data/dataset.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/training_data.h"

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

}  // namespace
}  // namespace instseg
