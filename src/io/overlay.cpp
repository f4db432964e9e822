#include "instseg/io/overlay.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>

#include "instseg/errors.h"
#include "instseg/io/class_names.h"

namespace instseg {

namespace {

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

// Palette colour k: hues stepped by the golden ratio around the circle, so that consecutive
// detections (often neighbours of one class) differ by over a third of the circle and no two of
// the first dozen are alike; bright and saturated so black label text reads on them.
cv::Scalar instance_colour(int64_t k) {
  const double hue = std::fmod(static_cast<double>(k) * 0.618033988749895, 1.0) * 180.0;
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue, 200, 255));
  cv::Mat bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  const auto c = bgr.at<cv::Vec3b>(0, 0);
  return {static_cast<double>(c[0]), static_cast<double>(c[1]), static_cast<double>(c[2])};
}

}  // namespace

std::array<uint8_t, 3> instance_colour_bgr(int64_t k) {
  const auto c = instance_colour(k);
  return {uint8_t(c[0]), uint8_t(c[1]), uint8_t(c[2])};
}

namespace {

// The outline's colour: the tint at half brightness, so the edge stands out on the tint and on
// the picture alike (Detectron2 darkens its polygon edges the same way).
cv::Scalar darker(const cv::Scalar& c) { return c * 0.5; }

cv::Mat to_bgr_u8(const torch::Tensor& image) {
  // [3, H, W] float RGB -> [H, W, 3] uint8 BGR, one channel at a time so that no float copy of the
  // whole picture is made beside it.
  const auto rgb = image.detach().to(torch::kCPU, torch::kFloat);
  cv::Mat bgr(static_cast<int>(rgb.size(1)), static_cast<int>(rgb.size(2)), CV_8UC3);
  const auto out = torch::from_blob(bgr.data, {rgb.size(1), rgb.size(2), 3}, torch::kUInt8);
  for (int c = 0; c < 3; ++c) out.select(2, c).copy_(rgb[2 - c].clamp(0, 1).mul_(255.0f).round_());
  return bgr;
}

// Tints and outlines one mask on the canvas (the picture enlarged `scale` times), within its
// region plus a pixel of margin, so that findContours sees the mask's outside as on the whole
// image and the outline is the same.
void draw_mask(cv::Mat& canvas, const MaskRegion& region, const OverlayOptions& options, const cv::Scalar& colour,
               int line_width) {
  const int scale = options.scale;
  const int64_t rows = region.probs.size(0), cols = region.probs.size(1);
  if (rows == 0 || cols == 0) return;
  const int64_t height = canvas.rows / scale, width = canvas.cols / scale;
  const int64_t x0 = std::max<int64_t>(region.x - 1, 0), y0 = std::max<int64_t>(region.y - 1, 0);
  const int64_t x1 = std::min(region.x + cols + 1, width), y1 = std::min(region.y + rows + 1, height);
  auto mask_tensor = torch::zeros({y1 - y0, x1 - x0}, torch::kUInt8);
  using torch::indexing::Slice;
  mask_tensor.index({Slice(region.y - y0, region.y - y0 + rows), Slice(region.x - x0, region.x - x0 + cols)})
      .copy_(region.probs >= options.mask_thresh);
  cv::Mat mask(static_cast<int>(mask_tensor.size(0)), static_cast<int>(mask_tensor.size(1)), CV_8UC1,
               mask_tensor.data_ptr());
  if (scale > 1) cv::resize(mask, mask, cv::Size(mask.cols * scale, mask.rows * scale), 0, 0, cv::INTER_NEAREST);
  const cv::Rect box(static_cast<int>(x0) * scale, static_cast<int>(y0) * scale, mask.cols, mask.rows);
  cv::Mat area = canvas(box);
  cv::Mat tinted(area.size(), area.type(), colour);
  cv::Mat blended;
  cv::addWeighted(area, 1.0 - options.mask_alpha, tinted, options.mask_alpha, 0.0, blended);
  blended.copyTo(area, mask);
  if (!options.outlines) return;
  // Every pixel of the contour (CHAIN_APPROX_NONE) drawn without anti-aliasing: a solid line on the
  // mask's own edge pixels, widened symmetrically when line_width > 1. Holes get outlined too.
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask, contours, cv::RETR_LIST, cv::CHAIN_APPROX_NONE, box.tl());
  cv::drawContours(canvas, contours, -1, darker(colour), line_width, cv::LINE_8);
}

std::string encode(const cv::Mat& canvas, const std::string& extension) {
  std::vector<uchar> encoded;
  if (!cv::imencode(extension, canvas, encoded)) {
    throw InputError("cannot encode overlay picture as " + extension);
  }
  return std::string(encoded.begin(), encoded.end());
}

// Draws the detections on `canvas` (the picture already enlarged options.scale times), in place.
void draw(cv::Mat& canvas, const Detections& detections, const MaskRegionOf* mask_of,
          const std::vector<std::string>& class_names, const OverlayOptions& options) {
  const int scale = options.scale;
  const OverlayStyle style = overlay_style(canvas.cols, canvas.rows);
  const auto scores = detections.scores.to(torch::kCPU, torch::kFloat);
  const auto boxes = detections.boxes.to(torch::kCPU, torch::kFloat);
  const auto labels = detections.labels.to(torch::kCPU, torch::kLong);
  const int64_t count = scores.size(0);
  const bool has_masks = mask_of || (detections.masks.defined() && detections.masks.numel() > 0);

  // The detections to draw, most confident first (labels are placed in this order).
  std::vector<int64_t> shown;
  for (int64_t i = 0; i < count; ++i) {
    if (scores[i].item<float>() >= options.show_thresh) shown.push_back(i);
  }
  std::stable_sort(shown.begin(), shown.end(),
                   [&](int64_t a, int64_t b) { return scores[a].item<float>() > scores[b].item<float>(); });
  std::vector<PixelRect> box_rects;
  for (const int64_t i : shown) {
    const auto b = boxes[i] * scale;
    const int x1 = static_cast<int>(b[0].item<float>()), y1 = static_cast<int>(b[1].item<float>());
    const int x2 = static_cast<int>(b[2].item<float>()), y2 = static_cast<int>(b[3].item<float>());
    box_rects.push_back({x1, y1, x2 - x1, y2 - y1});
  }

  // Masks and boxes with low scores first, so the most confident end on top.
  for (size_t n = shown.size(); n-- > 0;) {
    const int64_t i = shown[n];
    const auto colour = instance_colour(i);
    if (has_masks) {
      draw_mask(canvas, mask_of ? (*mask_of)(i) : MaskRegion{0, 0, detections.masks[i][0]}, options, colour,
                style.line_width);
    }
    const PixelRect& r = box_rects[n];
    cv::rectangle(canvas, cv::Point(r.x, r.y), cv::Point(r.x + r.width, r.y + r.height), colour, style.line_width,
                  cv::LINE_AA);
  }
  if (!options.labels || shown.empty()) return;

  // Labels last, over every mask and box, each where it covers no other label.
  const int pad = std::max(1, style.text_height / 5);
  std::vector<std::string> texts;
  std::vector<PixelRect> sizes;
  std::vector<int> baselines;
  for (const int64_t i : shown) {
    char score_text[16];
    std::snprintf(score_text, sizeof score_text, " %.2f", scores[i].item<float>());
    texts.push_back(class_name(class_names, labels[i].item<int64_t>()) + score_text);
    int baseline = 0;
    const auto size = cv::getTextSize(texts.back(), kFont, style.font_scale, style.text_thickness, &baseline);
    baselines.push_back(baseline);
    sizes.push_back({0, 0, size.width + 2 * pad, size.height + baseline + 2 * pad});
  }
  const auto spots = place_labels(box_rects, sizes, canvas.cols, canvas.rows);
  for (size_t n = 0; n < shown.size(); ++n) {
    if (!spots[n]) continue;
    const PixelRect& s = *spots[n];
    cv::rectangle(canvas, cv::Rect(s.x, s.y, s.width, s.height), instance_colour(shown[n]), cv::FILLED);
    cv::putText(canvas, texts[n], cv::Point(s.x + pad, s.y + s.height - pad - baselines[n]), kFont, style.font_scale,
                cv::Scalar(0, 0, 0), style.text_thickness, cv::LINE_AA);
  }
}

std::string render(const torch::Tensor& image, const Detections& detections, const MaskRegionOf* mask_of,
                   const std::vector<std::string>& class_names, const OverlayOptions& options,
                   const std::string& extension) {
  if (options.scale < 1) throw ConfigError("overlay scale must be >= 1, got " + std::to_string(options.scale));
  cv::Mat canvas = to_bgr_u8(image);
  if (options.scale > 1) cv::resize(canvas, canvas, cv::Size(), options.scale, options.scale, cv::INTER_NEAREST);
  draw(canvas, detections, mask_of, class_names, options);
  return encode(canvas, extension);
}

}  // namespace

OverlayStyle overlay_style(int width, int height) {
  // Detectron2 sizes its font as sqrt(area) / 90 points at its figure's dpi; in pixels that is
  // about sqrt(area) / 45: 12 px on a 640 x 480 picture, 23 px on 1333 x 800. 8 px is the least
  // that stays legible (the `scale` option enlarges tiny pictures beyond that).
  const double side = std::sqrt(static_cast<double>(std::max(width, 1)) * std::max(height, 1));
  OverlayStyle style;
  style.text_height = std::max(8, static_cast<int>(std::lround(side / 45.0)));
  style.text_thickness = std::max(1, static_cast<int>(std::lround(style.text_height / 12.0)));
  int baseline = 0;
  const int unit_height = cv::getTextSize("A", kFont, 1.0, style.text_thickness, &baseline).height;
  style.font_scale = static_cast<double>(style.text_height) / unit_height;
  // Lines a quarter of Detectron2's font size: 1 px up to ~700 x 700, 3 px on 1333 x 800.
  style.line_width = std::max(1, static_cast<int>(std::lround(side / 360.0)));
  return style;
}

std::vector<std::optional<PixelRect>> place_labels(const std::vector<PixelRect>& boxes,
                                                   const std::vector<PixelRect>& label_sizes, int width, int height) {
  if (boxes.size() != label_sizes.size()) {
    throw std::invalid_argument("place_labels: " + std::to_string(boxes.size()) + " boxes but " +
                                std::to_string(label_sizes.size()) + " label sizes");
  }
  std::vector<std::optional<PixelRect>> spots(boxes.size());
  std::vector<PixelRect> placed;
  for (size_t i = 0; i < boxes.size(); ++i) {
    const PixelRect& box = boxes[i];
    const int w = label_sizes[i].width, h = label_sizes[i].height;
    if (w <= 0 || h <= 0 || w > width || h > height) continue;
    // Left edge at the box's, moved left (or right, for a box off the left edge) to stay inside.
    const int x = std::clamp(box.x, 0, width - w);
    for (const int y : {box.y - h, box.y, box.y + box.height}) {
      const PixelRect spot{x, y, w, h};
      if (y < 0 || y + h > height) continue;
      if (std::any_of(placed.begin(), placed.end(), [&](const PixelRect& p) { return p.overlaps(spot); })) continue;
      spots[i] = spot;
      placed.push_back(spot);
      break;
    }
  }
  return spots;
}

std::string render_overlay(const torch::Tensor& image, const Detections& detections,
                           const std::vector<std::string>& class_names,
                           const OverlayOptions& options, const std::string& extension) {
  return render(image, detections, nullptr, class_names, options, extension);
}

std::string render_overlay(const torch::Tensor& image, const Detections& detections, const MaskRegionOf& mask_of,
                           const std::vector<std::string>& class_names, const OverlayOptions& options,
                           const std::string& extension) {
  if (!(options.mask_thresh > 0)) {
    throw ConfigError("overlay mask_thresh must be > 0 with mask regions, got " + std::to_string(options.mask_thresh));
  }
  return render(image, detections, &mask_of, class_names, options, extension);
}

void draw_overlay(cv::Mat& bgr, const Detections& detections, const MaskRegionOf& mask_of,
                  const std::vector<std::string>& class_names, const OverlayOptions& options) {
  if (bgr.type() != CV_8UC3) throw std::invalid_argument("draw_overlay: need an 8-bit BGR picture");
  if (options.scale != 1) throw ConfigError("draw_overlay draws at scale 1, got " + std::to_string(options.scale));
  if (!(options.mask_thresh > 0)) {
    throw ConfigError("overlay mask_thresh must be > 0 with mask regions, got " + std::to_string(options.mask_thresh));
  }
  draw(bgr, detections, &mask_of, class_names, options);
}

}  // namespace instseg
