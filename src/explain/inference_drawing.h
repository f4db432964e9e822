#pragma once
// Picture helpers of explain's inference view: a picture enlarged to a readable size with boxes
// given in the model's (resized image) pixels, legends, panels with titles.
#include <torch/types.h>

#include <opencv2/core/mat.hpp>
#include <opencv2/core/types.hpp>

#include <string>
#include <utility>
#include <vector>

namespace instseg::explain::infer {

// A picture of the resized image, enlarged `factor` times (whole pixels) so that text reads on
// small inputs; draws boxes given in the resized image's pixels.
struct Canvas {
  cv::Mat picture;
  double factor = 1;
  // Box (x1, y1, x2, y2) in resized-image pixels.
  void box(const float* xyxy, const cv::Scalar& bgr, int thickness = 1);
  // Text at (x, y) in resized-image pixels, kept inside the picture.
  void text(const std::string& s, double x, double y, const cv::Scalar& bgr);
};

// The picture enlarged by the smallest whole factor that makes its shorter side at least
// `min_side` pixels.
Canvas make_canvas(const cv::Mat& picture, int min_side = 480);

// Coloured squares with labels, stacked in the top-left corner (or below `y`).
void draw_legend(cv::Mat& picture, const std::vector<std::pair<std::string, cv::Scalar>>& entries, int x = 6,
                 int y = 6);

// A panel: `picture` under a title bar of one or more lines.
cv::Mat titled(const cv::Mat& picture, const std::vector<std::string>& lines);

// A picture resized (nearest neighbours) so its longer side is `side` pixels.
cv::Mat fit(const cv::Mat& picture, int side);

// Side-by-side panels, wrapped into rows of at most `per_row`.
cv::Mat grid(const std::vector<cv::Mat>& panels, int per_row, int gap = 6);

// Two-colour blend: picture * (1 - alpha) + overlay * alpha (same size).
cv::Mat blend(const cv::Mat& picture, const cv::Mat& overlay, double alpha);

}  // namespace instseg::explain::infer
