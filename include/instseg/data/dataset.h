#pragma once
// What every training dataset hands the trainer: original-size images with their targets. The
// model's transform does normalisation, resizing and batch padding.
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "instseg/data/category_map.h"
#include "instseg/structures/detections.h"

namespace instseg::data {

struct Sample {
  torch::Tensor image;  // [3, H, W] float RGB in [0, 1], the image's own size
  Targets targets;      // boxes [G, 4] float xyxy in image pixels, labels [G] int64, masks [G, H, W] uint8
  int64_t image_id = 0; // the dataset's id (COCO image id; index + 1 for folder and synthetic data)
  std::string file;     // source image path; empty for generated images
};

// Empty targets for an image of height x width (a negative: no objects).
Targets empty_targets(int64_t height, int64_t width);

// Tight boxes of binary masks: [G, H, W] -> [G, 4] float xyxy on pixel edges (x2 = last column + 1,
// like COCO's bbox of a mask), so a one-pixel mask has width 1. An empty mask gives zeros.
torch::Tensor mask_boxes(const torch::Tensor& masks);

// Random access to samples. get() is const and must be safe to call from several threads at once:
// the loader's prefetch thread calls it while the trainer runs.
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Sample get(int64_t index) const = 0;  // index in [0, size())
  virtual const CategoryMap& categories() const = 0;
};

}  // namespace instseg::data
