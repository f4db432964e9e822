#pragma once
// Drawing shared by explain's two views: tensors to pictures, heat maps, boxes, text. Each view
// keeps its own picture-specific drawing in its own file.
#include <torch/types.h>

#include <opencv2/core/mat.hpp>
#include <opencv2/core/types.hpp>

#include <array>
#include <string>
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

}  // namespace instseg::explain
