#pragma once
// Pictures of detections, drawn to be read by a person (Detectron2's Visualizer is the reference
// point): each instance in its own colour from a fixed palette of well-separated hues (two touching
// instances of one class are told apart), a translucent mask with a solid, darker outline, the box,
// and a "class score" label placed where it covers no other label. Text and lines are sized from
// the picture. One drawing module shared by predict, the demo and explain.
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "instseg/structures/detections.h"
#include "instseg/structures/mask_region.h"

namespace cv {
class Mat;
}

namespace instseg {

struct OverlayOptions {
  double show_thresh = 0.5;   // detections scoring below this are not drawn
  double mask_thresh = 0.5;   // mask probability that counts as foreground (torchvision's)
  double mask_alpha = 0.45;   // opacity of the mask colour
  int scale = 1;              // picture enlarged this many times, so labels fit on small images
  bool outlines = true;       // draw each mask's contour (solid, darker than its tint)
  bool labels = true;         // draw "class score" labels
};

// Text and line sizes for a canvas of width x height pixels (the picture times options.scale):
// they grow with the square root of the area, as Detectron2's Visualizer sizes its font, with a
// floor that keeps labels legible on small pictures.
struct OverlayStyle {
  int text_height = 0;      // pixels, height of a capital letter of the label text
  double font_scale = 0;    // OpenCV's FONT_HERSHEY_SIMPLEX scale giving text_height
  int text_thickness = 1;   // pixels
  int line_width = 1;       // box and mask outline, pixels
};
OverlayStyle overlay_style(int width, int height);

// The colour render_overlay draws detection k in (B, G, R): other pictures of the same detections
// use it so a reader can match them.
std::array<uint8_t, 3> instance_colour_bgr(int64_t k);

// Pixel rectangles [x, x + width) x [y, y + height).
struct PixelRect {
  int x = 0, y = 0, width = 0, height = 0;
  bool overlaps(const PixelRect& o) const {
    return x < o.x + o.width && o.x < x + width && y < o.y + o.height && o.y < y + height;
  }
};

// Where each detection's label goes (greedy, in the given order: put the most confident first).
// boxes[i] is detection i's box and label_sizes[i] its label's size (x, y unused). Tried in turn:
// above the box, inside its top, below it; each shifted left as far as needed to end inside the
// picture. A spot that leaves the picture or overlaps a label already placed is skipped; a label
// with no spot left is not drawn (nullopt). The placed rectangles never overlap and lie inside
// [0, width) x [0, height).
std::vector<std::optional<PixelRect>> place_labels(const std::vector<PixelRect>& boxes,
                                                   const std::vector<PixelRect>& label_sizes, int width, int height);

// image: [3, H, W] float RGB in [0, 1]. Returns the picture as an 8-bit BGR buffer encoded in the
// format given by `extension` (".jpg" or ".png"). Detection k is drawn in palette colour k.
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

// The same drawing made in place on an 8-bit BGR picture of the image's size (a video frame as
// cv::VideoCapture gives it), for callers that encode the picture themselves (video): the pixels
// are those render_overlay encodes for that picture. options.scale must be 1.
void draw_overlay(cv::Mat& bgr, const Detections& detections, const MaskRegionOf& mask_of,
                  const std::vector<std::string>& class_names, const OverlayOptions& options);

}  // namespace instseg
