#pragma once
// Generated images of coloured shapes on textured backgrounds, for the demo and for tests: a
// dataset that a 2-core CPU can train on in minutes. Image i is made from (seed, i) alone, so any
// index is reproducible on its own and the same seed always gives the same pixels.
#include "instseg/data/dataset.h"

namespace instseg::data {

struct SyntheticOptions {
  int64_t num_images = 200;
  int64_t height = 256;
  int64_t width = 256;
  int64_t min_objects = 2;            // shapes per image, drawn uniformly in [min, max] ...
  int64_t max_objects = 6;            // ... fewer when no free enough spot is found
  double min_size = 0.15;             // shape diameter as a fraction of the shorter image side
  double max_size = 0.40;
  double min_visible_fraction = 0.4;  // a shape is never hidden more than this much by later ones
  int64_t min_visible_area = 64;      // pixels a shape keeps in view; smaller shapes are re-placed
  uint64_t seed = 0;
  void validate() const;              // throws ConfigError naming the field
};

// Categories 1..4 (= labels): circle, rectangle, triangle, star.
class SyntheticDataset : public Dataset {
 public:
  explicit SyntheticDataset(SyntheticOptions options);

  int64_t size() const override { return options_.num_images; }
  // image_id = index + 1, file empty. Pixel values are multiples of 1/255, so a PNG keeps them.
  Sample get(int64_t index) const override;
  const CategoryMap& categories() const override { return categories_; }
  const SyntheticOptions& options() const { return options_; }

 private:
  SyntheticOptions options_;
  CategoryMap categories_;
};

}  // namespace instseg::data
