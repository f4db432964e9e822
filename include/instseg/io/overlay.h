#pragma once
// Pictures of detections: translucent coloured masks, boxes, class names and scores.
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "instseg/structures/detections.h"
#include "instseg/structures/mask_region.h"

namespace instseg {

struct OverlayOptions {
  double show_thresh = 0.5;   // detections scoring below this are not drawn
  double mask_thresh = 0.5;   // mask probability that counts as foreground (torchvision's)
  double mask_alpha = 0.45;   // opacity of the mask colour
  int scale = 1;              // picture enlarged this many times, so labels fit on small images
};

// image: [3, H, W] float RGB in [0, 1]. Returns the picture as an 8-bit BGR buffer encoded in the
// format given by `extension` (".jpg" or ".png").
std::string render_overlay(const torch::Tensor& image, const Detections& detections,
                           const std::vector<std::string>& class_names,
                           const OverlayOptions& options, const std::string& extension);

// The same picture with each detection's mask given as the region it covers (mask_of(k) for
// detection k; detections.masks is not read), e.g. a MaskPaster's paste: no image-sized mask of
// every detection is held, and tinting works on the region only. options.mask_thresh must be > 0
// (pixels outside a region are 0).
using MaskRegionOf = std::function<MaskRegion(int64_t k)>;
std::string render_overlay(const torch::Tensor& image, const Detections& detections, const MaskRegionOf& mask_of,
                           const std::vector<std::string>& class_names, const OverlayOptions& options,
                           const std::string& extension);

}  // namespace instseg
