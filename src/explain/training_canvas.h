#pragma once
// Picture helpers of explain's training view: an image shown at a display scale (boxes given in
// the image's pixels), text panels for legends and worked numbers, and stacking pictures.
#include <opencv2/core/mat.hpp>
#include <opencv2/core/types.hpp>

#include <string>
#include <utility>
#include <vector>

// In their own namespace: the inference view has helpers of the same names.
namespace instseg::explain::training_pictures {

// A picture of an image drawn `scale` times its size; drawing calls take the image's pixels.
struct Canvas {
  cv::Mat picture;
  double scale = 1;

  // base: the image in its own pixels (8-bit BGR).
  Canvas(const cv::Mat& base, double scale);
  void box(const float* xyxy, const cv::Scalar& bgr, int thickness = 1);
  void dot(double x, double y, const cv::Scalar& bgr, int radius = 2);
  // Text whose top-left corner is at image pixel (x, y), kept inside the picture.
  void label(const std::string& text, double x, double y, const cv::Scalar& bgr);
};

// Scale that shows an image of this size with its longer side near `target` pixels: a whole
// factor when enlarging (crisp pixels), 1 for images already that large.
double display_scale(int height, int width, int target = 640);

// One line of a text panel: its text and colour.
using TextLine = std::pair<std::string, cv::Scalar>;
// Lines on a dark panel at least `width` pixels wide (wider when a line needs it).
cv::Mat text_panel(const std::vector<TextLine>& lines, int width = 0, double scale = 0.45);
// Pictures one above the other, widths padded on the right to the widest.
cv::Mat vconcat_padded(const std::vector<cv::Mat>& pictures, int gap = 4);
// Pictures in rows of `columns`.
cv::Mat grid(const std::vector<cv::Mat>& pictures, int columns, int gap = 4);
// Light hatching over the image outside its valid (height, width) region: the padding.
void hatch_padding(Canvas& canvas, int valid_height, int valid_width);

}  // namespace instseg::explain::training_pictures
