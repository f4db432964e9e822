#pragma once
// Writes explain's pictures, each with the JSON of the numbers it shows, and the index of all.
#include <nlohmann/json.hpp>
#include <opencv2/core/mat.hpp>

#include <string>
#include <vector>

#include "instseg/explain/explain.h"

namespace instseg::explain {

class FigureWriter {
 public:
  // out_dir must exist. format: "png" or "jpg". progress: one line per figure on stderr.
  FigureWriter(std::string out_dir, std::string format, bool progress);
  // Writes out_dir/<name>.<format> (picture: 8-bit BGR) and out_dir/<name>.json: {"caption": ...,
  // "picture": "<name>.<format>", ...numbers}. `name` may hold one folder ("train/03_matches"),
  // created on demand. Throws InputError naming the file when it cannot be written.
  void write(const std::string& name, const cv::Mat& picture, const nlohmann::json& numbers,
             const std::string& caption);
  // out_dir/index.json: every figure written, in order.
  void write_index() const;
  const std::vector<ExplainFigure>& figures() const { return figures_; }

 private:
  std::string out_dir_;
  std::string format_;
  bool progress_;
  std::vector<ExplainFigure> figures_;
};

}  // namespace instseg::explain
