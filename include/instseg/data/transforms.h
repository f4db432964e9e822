#pragma once
// Training-time augmentation. Resizing and normalisation are the model transform's job.
#include "instseg/data/dataset.h"

namespace instseg::data {

// Mirrors a sample left-right: image columns, mask columns and boxes (x1, x2) -> (W - x2, W - x1),
// so a box on pixel edges stays the tight box of its flipped mask.
Sample hflip(Sample sample);

}  // namespace instseg::data
