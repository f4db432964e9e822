#include "instseg/evaluation/confusion.h"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "instseg/common/parallel_for.h"
#include "instseg/errors.h"

namespace instseg::evaluation {

void ConfusionOptions::validate() const {
  if (!(iou_threshold > 0 && iou_threshold <= 1)) {
    throw ConfigError("confusion.iou_threshold must be in (0, 1], got " + std::to_string(iou_threshold));
  }
  if (num_threads < 0) throw ConfigError("confusion.num_threads must be >= 0, got " + std::to_string(num_threads));
}

std::string ConfusionMatrix::to_csv() const {
  const size_t n = category_ids.size() + 1;
  const auto name = [&](size_t i) { return i + 1 == n ? std::string("background") : category_names[i]; };
  const auto quoted = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  std::string csv = "true\\predicted";
  for (size_t j = 0; j < n; ++j) csv += "," + quoted(name(j));
  csv += "\n";
  for (size_t i = 0; i < n; ++i) {
    csv += quoted(name(i));
    for (size_t j = 0; j < n; ++j) csv += "," + std::to_string(at(i, j));
    csv += "\n";
  }
  return csv;
}

ConfusionMatrix confusion_matrix(const coco::Dataset& gt, const std::vector<coco::Detection>& dets, IouType type,
                                 const ConfusionOptions& options) {
  options.validate();
  const size_t K = gt.categories().size(), n = K + 1;
  std::vector<size_t> order(K);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return gt.categories()[x].id < gt.categories()[y].id; });
  std::vector<size_t> rank(K);
  ConfusionMatrix matrix;
  for (size_t k = 0; k < K; ++k) {
    rank[order[k]] = k;
    matrix.category_ids.push_back(gt.categories()[order[k]].id);
    matrix.category_names.push_back(gt.categories()[order[k]].name);
  }
  // Detections per image, validated like evaluate() does.
  std::vector<std::vector<size_t>> by_image(gt.images().size());
  for (size_t i = 0; i < dets.size(); ++i) {
    const int64_t image = gt.image_index(dets[i].image_id);
    if (image < 0) throw InputError("detections[" + std::to_string(i) + "].image_id: not in the ground truth");
    if (gt.category_index(dets[i].category_id) < 0) {
      throw InputError("detections[" + std::to_string(i) + "].category_id: not in the ground truth");
    }
    if (type == IouType::kSegm && !dets[i].mask) throw InputError("detections[" + std::to_string(i) + "].mask: missing");
    if (dets[i].score >= options.score_threshold) by_image[size_t(image)].push_back(i);
  }
  std::vector<std::vector<int64_t>> per_image(gt.images().size());
  instseg::parallel_for(gt.images().size(), instseg::resolve_threads(options.num_threads), [&](size_t im) {
    const auto& ann = gt.annotations_of_image(gt.images()[im].id);
    const auto& ds = by_image[im];
    std::vector<coco::Rle> gt_masks(ann.size());
    std::vector<std::array<double, 4>> gt_boxes(ann.size()), dt_boxes(ds.size());
    for (size_t g = 0; g < ann.size(); ++g) {
      gt_boxes[g] = gt.annotations()[ann[g]].bbox;
      if (type == IouType::kSegm) {
        gt_masks[g] = gt.annotation_rle(ann[g]);
        gt_boxes[g] = coco::to_bbox(gt_masks[g]);
      }
    }
    for (size_t d = 0; d < ds.size(); ++d) {
      const auto& det = dets[ds[d]];
      dt_boxes[d] = type == IouType::kSegm ? coco::to_bbox(*det.mask) : (det.has_bbox ? det.bbox : coco::to_bbox(*det.mask));
    }
    const auto overlap = [&](size_t d, size_t g, bool crowd) {
      const double box = coco::box_iou(dt_boxes[d], gt_boxes[g], crowd);
      if (type == IouType::kBbox || box <= 0) return box;
      return coco::mask_iou(*dets[ds[d]].mask, gt_masks[g], crowd);
    };
    std::vector<std::tuple<double, double, size_t, size_t>> pairs;  // (iou, score, d, g)
    std::vector<char> on_crowd(ds.size(), 0);
    for (size_t d = 0; d < ds.size(); ++d) {
      for (size_t g = 0; g < ann.size(); ++g) {
        const bool crowd = gt.annotations()[ann[g]].iscrowd;
        const double v = overlap(d, g, crowd);
        if (v < options.iou_threshold) continue;
        if (crowd) {
          on_crowd[d] = 1;
        } else {
          pairs.emplace_back(v, dets[ds[d]].score, d, g);
        }
      }
    }
    std::sort(pairs.begin(), pairs.end(), [](const auto& x, const auto& y) {
      if (std::get<0>(x) != std::get<0>(y)) return std::get<0>(x) > std::get<0>(y);
      if (std::get<1>(x) != std::get<1>(y)) return std::get<1>(x) > std::get<1>(y);
      return std::make_pair(std::get<2>(x), std::get<3>(x)) < std::make_pair(std::get<2>(y), std::get<3>(y));
    });
    auto& counts = per_image[im];
    counts.assign(n * n, 0);
    std::vector<char> d_used(ds.size(), 0), g_used(ann.size(), 0);
    const auto class_of = [&](int64_t category_id) { return rank[size_t(gt.category_index(category_id))]; };
    for (const auto& [v, score, d, g] : pairs) {
      if (d_used[d] || g_used[g]) continue;
      d_used[d] = g_used[g] = 1;
      ++counts[class_of(gt.annotations()[ann[g]].category_id) * n + class_of(dets[ds[d]].category_id)];
    }
    for (size_t g = 0; g < ann.size(); ++g) {
      const auto& a = gt.annotations()[ann[g]];
      if (!a.iscrowd && !g_used[g]) ++counts[class_of(a.category_id) * n + K];
    }
    for (size_t d = 0; d < ds.size(); ++d) {
      if (!d_used[d] && !on_crowd[d]) ++counts[K * n + class_of(dets[ds[d]].category_id)];
    }
  });
  matrix.counts.assign(n * n, 0);
  for (const auto& counts : per_image) {
    for (size_t i = 0; i < counts.size(); ++i) matrix.counts[i] += counts[i];
  }
  return matrix;
}

}  // namespace instseg::evaluation
