#pragma once
// PNG charts drawn with OpenCV: a generic line plot (reused for loss and AP curves in training),
// a labelled heatmap, and the evaluation plots of `instseg eval --plots`.
#include <string>
#include <vector>

#include "instseg/evaluation/coco_evaluator.h"
#include "instseg/evaluation/confusion.h"

namespace instseg {

struct PlotSeries {
  std::string label;      // shown in the legend
  std::vector<double> x;  // same length as y; non-finite points are skipped
  std::vector<double> y;
};

struct LinePlotOptions {
  std::string title;
  std::string x_label;
  std::string y_label;
  int width = 800;   // pixels
  int height = 600;
  // Axis ranges; when min >= max the range is taken from the data (with a small margin).
  double x_min = 0, x_max = 0, y_min = 0, y_max = 0;
  int max_legend_entries = 12;  // more series than this: the legend says "+N more"
  void validate() const;        // ConfigError naming the field
};

// Encodes the plot as PNG bytes (axes, ticks, labels, legend, one colour per series).
std::string render_line_plot(const std::vector<PlotSeries>& series, const LinePlotOptions& options);
// Renders and writes it atomically; InputError naming the path on failure.
void save_line_plot(const std::string& path, const std::vector<PlotSeries>& series, const LinePlotOptions& options);

// A matrix of counts as a PNG heatmap with row / column labels and the count in each cell
// (colour by row-normalised value, so rare classes stay visible).
std::string render_heatmap(const std::vector<std::vector<double>>& values, const std::vector<std::string>& row_labels,
                           const std::vector<std::string>& column_labels, const std::string& title,
                           const std::string& x_label, const std::string& y_label);

// Writes into `dir` (created if needed): pr_<type>_<iou>.png for IoU 0.50, 0.75 and 0.50:0.95 with
// the mean curve over classes and one curve per class (area all, 100 detections), and
// pr_<type>_class_<id>.png per class with GT. Returns the paths written.
std::vector<std::string> save_pr_curves(const std::string& dir, const evaluation::EvalResult& result);
// confusion_<type>.png and confusion_<type>.csv. Returns the paths written.
std::vector<std::string> save_confusion_matrix(const std::string& dir, const evaluation::ConfusionMatrix& matrix,
                                               const std::string& type);

}  // namespace instseg
