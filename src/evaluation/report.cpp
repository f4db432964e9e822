#include "instseg/evaluation/report.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace instseg::evaluation {

std::string category_table(const EvalResult& r, bool detailed) {
  size_t width = 8;
  for (const auto& name : r.category_names) width = std::max(width, name.size());
  const auto cell = [](double v) {
    char buffer[32];
    if (v < 0) return std::string("-");
    std::snprintf(buffer, sizeof buffer, "%.3f", v);
    return std::string(buffer);
  };
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-*s %8s", int(width), "category", "AP");
  out += line;
  if (detailed) {
    std::snprintf(line, sizeof line, " %8s %8s %8s", "AP50", "AP75", "num_gt");
    out += line;
  }
  out += "\n";
  for (int k = 0; k < r.num_categories(); ++k) {
    std::snprintf(line, sizeof line, "%-*s %8s", int(width), r.category_names[size_t(k)].c_str(),
                  cell(r.category_ap(k)).c_str());
    out += line;
    if (detailed) {
      std::snprintf(line, sizeof line, " %8s %8s %8lld", cell(r.mean_precision(0, k, 0, 2)).c_str(),
                    cell(r.mean_precision(5, k, 0, 2)).c_str(), static_cast<long long>(r.num_gt[size_t(k)]));
      out += line;
    }
    out += "\n";
  }
  return out;
}

std::string results_json(const std::vector<EvalResult>& results) {
  nlohmann::json out = nlohmann::json::object();
  for (const EvalResult& r : results) {
    nlohmann::json per_category = nlohmann::json::object();
    for (int k = 0; k < r.num_categories(); ++k) per_category[std::to_string(r.category_ids[size_t(k)])] = r.category_ap(k);
    out[to_string(r.iou_type)] = {{"stats", r.stats}, {"per_category", per_category}};
  }
  return out.dump(1);
}

}  // namespace instseg::evaluation
