#pragma once
#include <torch/types.h>

#include <cstdint>

namespace instseg {

// One detection's mask pasted into its image, as the region the paste can make non-zero:
// `probs` holds the pixels [y, y + rows) x [x, x + cols) (inside the image); every other pixel of
// the image is 0. Memory follows the box instead of the image (modeling/roi_heads/paste_masks.h).
struct MaskRegion {
  int64_t x = 0, y = 0;
  torch::Tensor probs;  // [rows, cols] float; [0, 0] when the box lies outside the image
};

}  // namespace instseg
