#pragma once
#include <torch/types.h>

namespace instseg {

// Pastes per-box mask probabilities into full images, as torchvision 0.14's
// paste_masks_in_image: each M x M mask is zero-padded by `padding` pixels, its box enlarged by
// (M + 2 padding) / M about the centre and truncated to whole pixels, the mask bilinearly resized
// (half-pixel centres) to the box's (x2 - x1 + 1) x (y2 - y1 + 1) pixels, and the part inside the
// image copied in. Only each box's visible region is computed.
// masks: [K, 1, M, M] probabilities; boxes: [K, 4] (x1, y1, x2, y2) in the output image's pixels.
// Returns [K, 1, height, width], zero outside the boxes.
torch::Tensor paste_masks_in_image(const torch::Tensor& masks, const torch::Tensor& boxes,
                                   int64_t height, int64_t width, int64_t padding = 1);

}  // namespace instseg
