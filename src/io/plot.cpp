#include "instseg/io/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

const cv::Scalar kBlack(0, 0, 0), kGrey(200, 200, 200), kWhite(255, 255, 255);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

// Distinct colours (BGR) cycled over series: matplotlib's tab10.
cv::Scalar series_colour(size_t i) {
  static const cv::Scalar colours[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44}, {40, 39, 214}, {189, 103, 148},
                                       {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};
  return colours[i % 10];
}

std::string format_tick(double v, double step) {
  char buffer[32];
  const int decimals = step >= 1 ? 0 : std::min(6, int(std::ceil(-std::log10(step))));
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
  return buffer;
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over span.
double nice_step(double span, int target) {
  const double raw = span / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (raw <= m * power) return m * power;
  }
  return 10 * power;
}

void put_text(cv::Mat& img, const std::string& text, cv::Point origin, double scale, const cv::Scalar& colour,
              bool centred = false) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, 1, &baseline);
  if (centred) origin.x -= size.width / 2;
  cv::putText(img, text, origin, kFont, scale, colour, 1, cv::LINE_AA);
}

std::string encode_png(const cv::Mat& img) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", img, bytes)) throw InputError("PNG encoding failed");
  return std::string(bytes.begin(), bytes.end());
}

void range_of(const std::vector<PlotSeries>& series, bool x_axis, double& lo, double& hi) {
  lo = INFINITY;
  hi = -INFINITY;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      const double v = x_axis ? s.x[i] : s.y[i];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  const double margin = (hi - lo) * 0.05;
  lo -= margin;
  hi += margin;
}

}  // namespace

void LinePlotOptions::validate() const {
  if (width < 200 || width > 8000) throw ConfigError("plot.width must be in [200, 8000], got " + std::to_string(width));
  if (height < 150 || height > 8000) throw ConfigError("plot.height must be in [150, 8000], got " + std::to_string(height));
  if (max_legend_entries < 0) throw ConfigError("plot.max_legend_entries must be >= 0");
}

std::string render_line_plot(const std::vector<PlotSeries>& series, const LinePlotOptions& o) {
  o.validate();
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) throw ConfigError("plot series '" + s.label + "': x and y differ in length");
  }
  double x0 = o.x_min, x1 = o.x_max, y0 = o.y_min, y1 = o.y_max;
  if (x0 >= x1) range_of(series, true, x0, x1);
  if (y0 >= y1) range_of(series, false, y0, y1);
  cv::Mat img(o.height, o.width, CV_8UC3, kWhite);
  const int left = 70, right = 20, top = 40, bottom = 55;
  const cv::Rect area(left, top, o.width - left - right, o.height - top - bottom);
  const auto to_px = [&](double x, double y) {
    return cv::Point2d(area.x + (x - x0) / (x1 - x0) * area.width, area.y + area.height - (y - y0) / (y1 - y0) * area.height);
  };
  // Grid and ticks.
  const double xs = nice_step(x1 - x0, 8), ys = nice_step(y1 - y0, 6);
  for (double x = std::ceil(x0 / xs) * xs; x <= x1 + 1e-9 * xs; x += xs) {
    const int px = int(std::lround(to_px(x, y0).x));
    cv::line(img, {px, area.y}, {px, area.y + area.height}, kGrey, 1);
    put_text(img, format_tick(x, xs), {px, area.y + area.height + 18}, 0.45, kBlack, true);
  }
  for (double y = std::ceil(y0 / ys) * ys; y <= y1 + 1e-9 * ys; y += ys) {
    const int py = int(std::lround(to_px(x0, y).y));
    cv::line(img, {area.x, py}, {area.x + area.width, py}, kGrey, 1);
    const std::string label = format_tick(y, ys);
    int baseline = 0;
    const int w = cv::getTextSize(label, kFont, 0.45, 1, &baseline).width;
    put_text(img, label, {area.x - w - 6, py + 5}, 0.45, kBlack);
  }
  cv::rectangle(img, area, kBlack, 1);
  // Series, clipped to the plot area.
  cv::Mat inner = img(area);
  for (size_t s = 0; s < series.size(); ++s) {
    std::vector<cv::Point> points;
    const auto flush = [&] {
      if (points.size() == 1) cv::circle(inner, points[0], 2, series_colour(s), cv::FILLED, cv::LINE_AA);
      if (points.size() > 1) cv::polylines(inner, points, false, series_colour(s), 2, cv::LINE_AA);
      points.clear();
    };
    for (size_t i = 0; i < series[s].x.size(); ++i) {
      if (!std::isfinite(series[s].x[i]) || !std::isfinite(series[s].y[i])) {
        flush();
        continue;
      }
      const cv::Point2d p = to_px(series[s].x[i], series[s].y[i]);
      points.emplace_back(int(std::lround(p.x)) - area.x, int(std::lround(p.y)) - area.y);
    }
    flush();
  }
  // Labels and legend (top right, inside the plot area).
  put_text(img, o.title, {o.width / 2, 26}, 0.6, kBlack, true);
  put_text(img, o.x_label, {area.x + area.width / 2, o.height - 12}, 0.5, kBlack, true);
  cv::Mat y_label(24, area.height, CV_8UC3, kWhite);
  put_text(y_label, o.y_label, {area.height / 2, 17}, 0.5, kBlack, true);
  cv::rotate(y_label, y_label, cv::ROTATE_90_COUNTERCLOCKWISE);
  y_label.copyTo(img(cv::Rect(4, area.y, 24, area.height)));
  const size_t shown = std::min(series.size(), size_t(o.max_legend_entries));
  if (shown > 0) {
    int text_w = 0, baseline = 0;
    for (size_t s = 0; s < shown; ++s) text_w = std::max(text_w, cv::getTextSize(series[s].label, kFont, 0.42, 1, &baseline).width);
    const bool more = series.size() > shown;
    const int rows = int(shown) + (more ? 1 : 0);
    const cv::Rect box(area.x + area.width - text_w - 44, area.y + 6, text_w + 38, rows * 17 + 8);
    cv::rectangle(img, box, kWhite, cv::FILLED);
    cv::rectangle(img, box, kGrey, 1);
    for (size_t s = 0; s < shown; ++s) {
      const int y = box.y + 14 + int(s) * 17;
      cv::line(img, {box.x + 6, y - 4}, {box.x + 26, y - 4}, series_colour(s), 2, cv::LINE_AA);
      put_text(img, series[s].label, {box.x + 32, y}, 0.42, kBlack);
    }
    if (more) put_text(img, "+" + std::to_string(series.size() - shown) + " more", {box.x + 32, box.y + 14 + int(shown) * 17}, 0.42, kBlack);
  }
  return encode_png(img);
}

void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const LinePlotOptions& options) {
  write_bytes_atomically(path, render_line_plot(series, options));
}

std::string render_heatmap(const std::vector<std::vector<double>>& values, const std::vector<std::string>& row_labels,
                           const std::vector<std::string>& column_labels, const std::string& title,
                           const std::string& x_label, const std::string& y_label) {
  const int rows = int(values.size()), cols = rows ? int(values[0].size()) : 0;
  if (int(row_labels.size()) != rows || int(column_labels.size()) != cols) {
    throw ConfigError("heatmap: " + std::to_string(rows) + "x" + std::to_string(cols) + " values but " +
                      std::to_string(row_labels.size()) + " row and " + std::to_string(column_labels.size()) + " column labels");
  }
  const int cell = std::clamp(900 / std::max(1, std::max(rows, cols)), 12, 48);
  const int label_w = 130, top = 150;
  cv::Mat img(top + rows * cell + 40, label_w + cols * cell + 20, CV_8UC3, kWhite);
  for (int r = 0; r < rows; ++r) {
    double row_sum = 0;
    for (double v : values[size_t(r)]) row_sum += v;
    for (int c = 0; c < cols; ++c) {
      const double v = values[size_t(r)][size_t(c)];
      const double share = row_sum > 0 ? v / row_sum : 0;  // white (0) to dark blue (1)
      const cv::Scalar colour(255 - 100 * share, 255 - 200 * share, 255 - 230 * share);
      const cv::Rect box(label_w + c * cell, top + r * cell, cell, cell);
      cv::rectangle(img, box, colour, cv::FILLED);
      cv::rectangle(img, box, kGrey, 1);
      if (v != 0 && cell >= 18) {
        char text[32];
        std::snprintf(text, sizeof text, "%g", v);
        put_text(img, text, {box.x + cell / 2, box.y + cell / 2 + 4}, 0.3, share > 0.5 ? kWhite : kBlack, true);
      }
    }
    put_text(img, row_labels[size_t(r)].substr(0, 16), {4, top + r * cell + cell / 2 + 4}, 0.38, kBlack);
  }
  // Column labels written vertically above the columns.
  for (int c = 0; c < cols; ++c) {
    cv::Mat label(cell, top - 10, CV_8UC3, kWhite);
    put_text(label, column_labels[size_t(c)].substr(0, 16), {2, cell / 2 + 4}, 0.38, kBlack);
    cv::rotate(label, label, cv::ROTATE_90_COUNTERCLOCKWISE);
    label.copyTo(img(cv::Rect(label_w + c * cell, 5, cell, top - 10)));
  }
  put_text(img, title + "   (rows: " + y_label + ", columns: " + x_label + ")", {4, img.rows - 12}, 0.5, kBlack);
  return encode_png(img);
}

std::vector<std::string> save_pr_curves(const std::string& dir, const evaluation::EvalResult& r) {
  using namespace evaluation;
  const std::string type = to_string(r.iou_type);
  std::vector<double> recall(recall_thresholds().begin(), recall_thresholds().end());
  // Precision at each recall point for threshold t (-1: mean over thresholds), category k
  // (-1: mean over categories with GT); area all, 100 detections.
  const auto curve = [&](int t, int k) {
    std::vector<double> y(kNumRecallPoints, NAN);
    for (int ri = 0; ri < kNumRecallPoints; ++ri) {
      double sum = 0;
      int n = 0;
      for (int ti = t < 0 ? 0 : t; ti < (t < 0 ? kNumIouThresholds : t + 1); ++ti) {
        for (int ki = k < 0 ? 0 : k; ki < (k < 0 ? r.num_categories() : k + 1); ++ki) {
          const double v = r.precision_at(ti, ri, ki, 0, kNumMaxDets - 1);
          if (v > -1) sum += v, ++n;
        }
      }
      if (n) y[size_t(ri)] = sum / n;
    }
    return y;
  };
  const struct {
    int t;
    const char* name;
    const char* label;
  } levels[] = {{0, "iou50", "IoU 0.50"}, {5, "iou75", "IoU 0.75"}, {-1, "iou50-95", "IoU 0.50:0.95"}};
  std::vector<std::string> written;
  char ap[32];
  for (const auto& level : levels) {
    std::vector<PlotSeries> series;
    std::snprintf(ap, sizeof ap, " (AP %.3f)", level.t < 0 ? r.stats[0] : r.mean_precision(level.t, -1, 0, 2));
    series.push_back({std::string("all classes") + ap, recall, curve(level.t, -1)});
    for (int k = 0; k < r.num_categories(); ++k) {
      if (r.num_gt[size_t(k)] == 0) continue;
      std::snprintf(ap, sizeof ap, " %.3f", r.mean_precision(level.t, k, 0, 2));
      series.push_back({r.category_names[size_t(k)] + ap, recall, curve(level.t, k)});
    }
    LinePlotOptions options;
    options.title = std::string("Precision-recall, ") + type + ", " + level.label + " (area all, 100 dets)";
    options.x_label = "recall";
    options.y_label = "precision";
    options.x_min = 0, options.x_max = 1, options.y_min = 0, options.y_max = 1.02;
    written.push_back(dir + "/pr_" + type + "_" + level.name + ".png");
    save_line_plot(written.back(), series, options);
  }
  for (int k = 0; k < r.num_categories(); ++k) {
    if (r.num_gt[size_t(k)] == 0) continue;
    std::vector<PlotSeries> series;
    for (const auto& level : levels) {
      std::snprintf(ap, sizeof ap, " (AP %.3f)", r.mean_precision(level.t, k, 0, 2));
      series.push_back({level.label + std::string(ap), recall, curve(level.t, k)});
    }
    LinePlotOptions options;
    options.title = "Precision-recall, " + type + ", " + r.category_names[size_t(k)] + " (id " +
                    std::to_string(r.category_ids[size_t(k)]) + ")";
    options.x_label = "recall";
    options.y_label = "precision";
    options.x_min = 0, options.x_max = 1, options.y_min = 0, options.y_max = 1.02;
    written.push_back(dir + "/pr_" + type + "_class_" + std::to_string(r.category_ids[size_t(k)]) + ".png");
    save_line_plot(written.back(), series, options);
  }
  return written;
}

std::vector<std::string> save_confusion_matrix(const std::string& dir, const evaluation::ConfusionMatrix& m,
                                               const std::string& type) {
  // Only classes that occur (as truth or prediction) are drawn; the CSV keeps all of them.
  const size_t n = m.category_ids.size() + 1;
  std::vector<size_t> keep;
  for (size_t i = 0; i < n; ++i) {
    int64_t total = 0;
    for (size_t j = 0; j < n; ++j) total += m.at(i, j) + m.at(j, i);
    if (total > 0 || i + 1 == n) keep.push_back(i);
  }
  std::vector<std::vector<double>> values;
  std::vector<std::string> labels;
  for (size_t i : keep) {
    labels.push_back(i + 1 == n ? "background" : m.category_names[i]);
    values.emplace_back();
    for (size_t j : keep) values.back().push_back(double(m.at(i, j)));
  }
  const std::string png = dir + "/confusion_" + type + ".png", csv = dir + "/confusion_" + type + ".csv";
  write_bytes_atomically(png, render_heatmap(values, labels, labels, "Confusion matrix, " + type + ", IoU 0.5",
                                             "predicted class", "true class"));
  write_bytes_atomically(csv, m.to_csv());
  return {png, csv};
}

}  // namespace instseg
