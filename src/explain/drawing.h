#pragma once
// Drawing shared by explain's two views: tensors to pictures, heat maps, boxes, text, a canvas
// that takes image coordinates, legends, panels and their layout.
#include <torch/types.h>

#include <opencv2/core/mat.hpp>
#include <opencv2/core/types.hpp>

#include <array>
#include <string>
#include <utility>
#include <vector>

namespace instseg::explain {

// [3, H, W] float RGB in [0, 1] -> 8-bit BGR picture.
cv::Mat to_bgr(const torch::Tensor& image);
// A normalised model input [3, H, W] (mean/std of the transform) back to a viewable picture.
cv::Mat denormalized_bgr(const torch::Tensor& input, const std::array<double, 3>& mean,
                         const std::array<double, 3>& std);
// [H, W] values -> 8-bit BGR heat map (viridis-like), scaled from lo..hi (both taken from the
// data when lo >= hi).
cv::Mat heat_map(const torch::Tensor& values, double lo = 0, double hi = 0);
// Enlarges a picture `factor` times with nearest neighbours (small maps stay readable).
cv::Mat enlarge(const cv::Mat& picture, int factor);
// Box (x1, y1, x2, y2) in picture pixels; thickness in pixels.
void draw_box(cv::Mat& picture, const float* xyxy, const cv::Scalar& bgr, int thickness = 1);
// Text with a dark backing so it reads on any picture; (x, y) is the top-left corner.
void draw_text(cv::Mat& picture, const std::string& text, int x, int y, const cv::Scalar& bgr,
               double scale = 0.45);
// Well-separated colours for index 0, 1, 2, ... (BGR).
cv::Scalar palette(int index);
// Pictures side by side (heights padded to the tallest) with a gap of `gap` pixels.
cv::Mat hconcat_padded(const std::vector<cv::Mat>& pictures, int gap = 4);

// A picture of an image drawn `scale` times its size; drawing calls take the image's pixels.
struct Canvas {
  cv::Mat picture;
  double scale = 1;
  // base: the image in its own pixels (8-bit BGR); enlarged with nearest neighbours (crisp
  // pixels), shrunk by area.
  Canvas(const cv::Mat& base, double scale);
  void box(const float* xyxy, const cv::Scalar& bgr, int thickness = 1);
  void dot(double x, double y, const cv::Scalar& bgr, int radius = 2);
  // Text whose top-left corner is at image pixel (x, y), kept inside the picture.
  void text(const std::string& text, double x, double y, const cv::Scalar& bgr);
};
// Scale that shows an image of this size with its longer side near `target` pixels: a whole
// factor when enlarging, 1 for images already that large.
double display_scale(int height, int width, int target = 640);
// The picture enlarged by the smallest whole factor that makes its shorter side at least
// `min_side` pixels.
Canvas make_canvas(const cv::Mat& picture, int min_side = 480);
// Light hatching over the image outside its valid (height, width) region: the padding.
void hatch_padding(Canvas& canvas, int valid_height, int valid_width);

// One line of a text panel: its text and colour.
using TextLine = std::pair<std::string, cv::Scalar>;
// Lines on a dark panel at least `width` pixels wide (wider when a line needs it).
cv::Mat text_panel(const std::vector<TextLine>& lines, int width = 0, double scale = 0.45);
// Coloured squares with labels, stacked from (x, y) down.
void draw_legend(cv::Mat& picture, const std::vector<TextLine>& entries, int x = 6, int y = 6);
// A panel: `picture` under a white title bar of one or more lines.
cv::Mat titled(const cv::Mat& picture, const std::vector<std::string>& lines);
// A picture resized (nearest neighbours) so its longer side is `side` pixels.
cv::Mat fit(const cv::Mat& picture, int side);
// Two-colour blend: picture * (1 - alpha) + overlay * alpha (same size).
cv::Mat blend(const cv::Mat& picture, const cv::Mat& overlay, double alpha);
// Pictures one above the other, widths padded on the right to the widest.
cv::Mat vconcat_padded(const std::vector<cv::Mat>& pictures, int gap = 4);
// Pictures in rows of `columns`.
cv::Mat grid(const std::vector<cv::Mat>& pictures, int columns, int gap = 4);

}  // namespace instseg::explain
