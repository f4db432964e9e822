// Greedy NMS on the CPU, the same arithmetic as torchvision's CPU kernel so that decisions at
// IoU == threshold and among equal scores come out the same.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/cpu/kernels.h"

namespace instseg::ops::cpu {
namespace {

// The boxes of one group in rank order, laid out so that the inner loop reads memory in sequence.
template <typename T>
struct GroupBoxes {
  std::vector<T> x1, y1, x2, y2, area;
  std::vector<char> suppressed;
  std::vector<int64_t> index;  // into the caller's boxes
  void add(T a, T b, T c, T d, int64_t i) {
    x1.push_back(a), y1.push_back(b), x2.push_back(c), y2.push_back(d);
    area.push_back((c - a) * (d - b));
    suppressed.push_back(0);
    index.push_back(i);
  }
};

// torchvision compares the float IoU with a double threshold; `iou > t` below equals that.
template <typename T>
T largest_not_above(double threshold) {
  T t = static_cast<T>(threshold);
  if (static_cast<double>(t) > threshold) t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}

template <typename T>
torch::Tensor nms_impl(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& groups,
                       double iou_threshold, int64_t max_keep) {
  const int64_t n = boxes.size(0);
  const auto boxes_c = boxes.contiguous();
  const T* b = boxes_c.data_ptr<T>();
  // Stable, as torchvision 0.14's kernel (checked on tied scores): of two equal-score
  // overlapping boxes the lower index survives.
  const auto order_t = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t* order = order_t.data_ptr<int64_t>();

  // Dense group ids; a box is only ever compared with the later boxes of its own group.
  std::vector<int64_t> group_of(static_cast<size_t>(n), 0);
  int64_t group_count = 1;
  if (groups.defined()) {
    const auto g = groups.to(torch::kLong).contiguous();
    const auto values_t = std::get<0>(torch::_unique(g));  // sorted
    const int64_t *gp = g.data_ptr<int64_t>(), *values = values_t.data_ptr<int64_t>();
    group_count = values_t.size(0);
    for (int64_t i = 0; i < n; ++i) {
      group_of[static_cast<size_t>(i)] = std::lower_bound(values, values + group_count, gp[i]) - values;
    }
  }
  std::vector<GroupBoxes<T>> members(static_cast<size_t>(group_count));
  std::vector<int64_t> position(static_cast<size_t>(n));  // of each rank within its group
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = order[r];
    auto& group = members[static_cast<size_t>(group_of[static_cast<size_t>(i)])];
    position[static_cast<size_t>(r)] = static_cast<int64_t>(group.index.size());
    group.add(b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3], i);
  }

  const T threshold = largest_not_above<T>(iou_threshold);
  const int64_t limit = max_keep < 0 ? n : std::min(max_keep, n);
  auto keep_t = torch::empty({limit}, boxes.options().dtype(torch::kLong));
  int64_t* keep = keep_t.data_ptr<int64_t>();
  int64_t kept = 0;
  for (int64_t r = 0; r < n && kept < limit; ++r) {
    auto& g = members[static_cast<size_t>(group_of[static_cast<size_t>(order[r])])];
    const auto k = static_cast<size_t>(position[static_cast<size_t>(r)]);
    if (g.suppressed[k]) continue;
    keep[kept++] = g.index[k];
    const T x1 = g.x1[k], y1 = g.y1[k], x2 = g.x2[k], y2 = g.y2[k], area = g.area[k];
    const size_t size = g.index.size();
    // No branch on the suppressed flag: suppressing a suppressed box again changes nothing.
    for (size_t m = k + 1; m < size; ++m) {
      const T w = std::max(T(0), std::min(x2, g.x2[m]) - std::max(x1, g.x1[m]));
      const T h = std::max(T(0), std::min(y2, g.y2[m]) - std::max(y1, g.y1[m]));
      const T inter = w * h;
      const T iou = inter / (area + g.area[m] - inter);
      g.suppressed[m] |= static_cast<char>(iou > threshold);  // strictly greater: IoU == threshold is kept
    }
  }
  return keep_t.narrow(0, 0, kept);
}

}  // namespace

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& groups,
                  double iou_threshold, int64_t max_keep) {
  if (boxes.size(0) == 0) return torch::empty({0}, boxes.options().dtype(torch::kLong));
  torch::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms",
                             [&] { keep = nms_impl<scalar_t>(boxes, scores, groups, iou_threshold, max_keep); });
  return keep;
}

}  // namespace instseg::ops::cpu
