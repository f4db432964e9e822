#include "inference_drawing.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "drawing.h"

namespace instseg::explain::infer {

void Canvas::box(const float* xyxy, const cv::Scalar& bgr, int thickness) {
  const float scaled[4] = {float(xyxy[0] * factor), float(xyxy[1] * factor), float(xyxy[2] * factor),
                           float(xyxy[3] * factor)};
  draw_box(picture, scaled, bgr, thickness);
}

void Canvas::text(const std::string& s, double x, double y, const cv::Scalar& bgr) {
  int baseline = 0;
  const auto size = cv::getTextSize(s, cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &baseline);
  const int px = std::clamp(int(std::lround(x * factor)), 0, std::max(0, picture.cols - size.width - 4));
  const int py = std::clamp(int(std::lround(y * factor)), 0, std::max(0, picture.rows - size.height - baseline - 4));
  draw_text(picture, s, px, py, bgr);
}

Canvas make_canvas(const cv::Mat& picture, int min_side) {
  const int shorter = std::max(1, std::min(picture.rows, picture.cols));
  const int factor = std::max(1, (min_side + shorter - 1) / shorter);
  return Canvas{enlarge(picture, factor), double(factor)};
}

void draw_legend(cv::Mat& picture, const std::vector<std::pair<std::string, cv::Scalar>>& entries, int x, int y) {
  for (const auto& [label, colour] : entries) {
    cv::rectangle(picture, cv::Rect(x, y, 14, 14), cv::Scalar(20, 20, 20), cv::FILLED);
    cv::rectangle(picture, cv::Rect(x + 2, y + 2, 10, 10), colour, cv::FILLED);
    draw_text(picture, label, x + 16, y - 2, colour);
    y += 20;
  }
}

cv::Mat titled(const cv::Mat& picture, const std::vector<std::string>& lines) {
  const int line_height = 18;
  int width = picture.cols;
  for (const auto& line : lines) {
    int baseline = 0;
    width = std::max(width, cv::getTextSize(line, cv::FONT_HERSHEY_SIMPLEX, 0.45, 1, &baseline).width + 6);
  }
  cv::Mat out(picture.rows + line_height * int(lines.size()) + 4, width, CV_8UC3, cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < lines.size(); ++i) {
    cv::putText(out, lines[i], cv::Point(2, 14 + line_height * int(i)), cv::FONT_HERSHEY_SIMPLEX, 0.45,
                cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  picture.copyTo(out(cv::Rect(0, line_height * int(lines.size()) + 4, picture.cols, picture.rows)));
  return out;
}

cv::Mat fit(const cv::Mat& picture, int side) {
  const double f = double(side) / std::max(picture.rows, picture.cols);
  cv::Mat out;
  cv::resize(picture, out, cv::Size(std::max(1, int(std::lround(picture.cols * f))),
                                    std::max(1, int(std::lround(picture.rows * f)))),
             0, 0, cv::INTER_NEAREST);
  return out;
}

cv::Mat grid(const std::vector<cv::Mat>& panels, int per_row, int gap) {
  std::vector<cv::Mat> rows;
  for (size_t i = 0; i < panels.size(); i += per_row) {
    std::vector<cv::Mat> row(panels.begin() + i, panels.begin() + std::min(panels.size(), i + per_row));
    rows.push_back(hconcat_padded(row, gap));
  }
  int width = 0, height = 0;
  for (const auto& r : rows) width = std::max(width, r.cols), height += r.rows + gap;
  cv::Mat out(std::max(1, height - gap), std::max(1, width), CV_8UC3, cv::Scalar(255, 255, 255));
  int y = 0;
  for (const auto& r : rows) {
    r.copyTo(out(cv::Rect(0, y, r.cols, r.rows)));
    y += r.rows + gap;
  }
  return out;
}

cv::Mat blend(const cv::Mat& picture, const cv::Mat& overlay, double alpha) {
  cv::Mat out;
  cv::addWeighted(picture, 1 - alpha, overlay, alpha, 0, out);
  return out;
}

}  // namespace instseg::explain::infer
