#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>

#include "instseg/structures/mask_region.h"

namespace instseg {

// How predict pastes each box's mask into the image: kTorchvision reproduces torchvision's
// detections exactly; kAligned puts each pixel where training's mask target sampled it (below).
enum class MaskPaste { kTorchvision, kAligned };

// Config vocabulary: "torchvision" | "aligned" (model.mask_paste, predict's --mask-paste); an unknown
// name throws ConfigError naming `key` and the choices.
std::string to_string(MaskPaste paste);
MaskPaste mask_paste_named(const std::string& name, const std::string& key);

// Pastes per-box mask probabilities into full images, as torchvision 0.14's
// paste_masks_in_image: each M x M mask is zero-padded by `padding` pixels, its box enlarged by
// (M + 2 padding) / M about the centre and truncated to whole pixels, the mask bilinearly resized
// (half-pixel centres) to the box's (x2 - x1 + 1) x (y2 - y1 + 1) pixels, and the part inside the
// image copied in. Only each box's visible region is computed.
// masks: [K, 1, M, M] probabilities; boxes: [K, 4] (x1, y1, x2, y2) in the output image's pixels.
// Returns [K, 1, height, width], zero outside the boxes.
torch::Tensor paste_masks_in_image(const torch::Tensor& masks, const torch::Tensor& boxes,
                                   int64_t height, int64_t width, int64_t padding = 1);

// The same paste where every image pixel takes its value from the place that the mask target of
// training sampled for it: mask cell i of a box (x1, y1, x2, y2) was learned from the ground truth
// at pixel x1 + (i + 0.5) (x2 - x1) / M (torchvision's project_masks_on_boxes, RoIAlign with
// aligned=False), so pixel x reads the mask bilinearly at u = (x - x1) M / (x2 - x1) - 0.5, zero
// beyond its edge cells (= grid_sample, align_corners=False, zero padding). The box is not
// rounded to whole pixels, nor widened by torchvision's "+1", which move the pasted mask by up to
// a pixel: a small share of a large object, but on the demo's 32-64 px shapes worth mask AP
// 0.84-0.86 instead of 0.78-0.80 for the same weights (docs/benchmarks.md).
torch::Tensor paste_masks_aligned(const torch::Tensor& masks, const torch::Tensor& boxes, int64_t height,
                                  int64_t width);

// The pastes above one mask at a time, with the same values: for callers that binarise, encode or
// draw each mask and let it go (predict), so that memory follows the boxes instead of the image:
// a whole [K, 1, height, width] paste costs 4 K bytes per image pixel (400 for 100 detections).
class MaskPaster {
 public:
  // masks: [K, 1, M, M] probabilities; boxes: [K, 4] (x1, y1, x2, y2) in the image's pixels;
  // `padding` applies to kTorchvision only.
  MaskPaster(const torch::Tensor& masks, const torch::Tensor& boxes, int64_t height, int64_t width, MaskPaste paste,
             int64_t padding = 1);

  int64_t size() const { return count_; }  // K
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  MaskRegion paste(int64_t k) const;  // 0 <= k < size()

 private:
  MaskPaste paste_;
  int64_t count_, height_, width_;
  int64_t mask_size_;        // M
  torch::Tensor padded_;     // [K, 1, S, S] zero-padded masks
  torch::Tensor boxes_cpu_;  // kTorchvision: [K, 4] int64 enlarged pixel boxes; kAligned: [K, 4] double boxes
};

}  // namespace instseg
