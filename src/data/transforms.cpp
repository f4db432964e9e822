#include "instseg/data/transforms.h"

#include <torch/torch.h>

namespace instseg::data {

Sample hflip(Sample sample) {
  const int64_t width = sample.image.size(-1);
  sample.image = sample.image.flip(-1);
  sample.targets.masks = sample.targets.masks.flip(-1);
  auto& boxes = sample.targets.boxes;  // [G, 4]
  boxes = torch::stack({width - boxes.select(1, 2), boxes.select(1, 1), width - boxes.select(1, 0),
                        boxes.select(1, 3)}, 1);
  return sample;
}

}  // namespace instseg::data
