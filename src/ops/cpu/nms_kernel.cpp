// Greedy NMS on the CPU, the same arithmetic as torchvision's CPU kernel so that decisions at
// IoU == threshold and among equal scores come out the same.
#include <torch/torch.h>

#include <algorithm>

#include "ops/cpu/kernels.h"

namespace instseg::ops::cpu {
namespace {

template <typename T>
torch::Tensor nms_impl(const torch::Tensor& boxes, const torch::Tensor& scores,
                       double iou_threshold) {
  const int64_t n = boxes.size(0);
  const auto x1_t = boxes.select(1, 0).contiguous(), y1_t = boxes.select(1, 1).contiguous();
  const auto x2_t = boxes.select(1, 2).contiguous(), y2_t = boxes.select(1, 3).contiguous();
  const auto areas_t = (x2_t - x1_t) * (y2_t - y1_t);  // [K]
  // Stable, as torchvision 0.14's kernel (checked on tied scores): of two equal-score
  // overlapping boxes the lower index survives.
  const auto order_t = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const T *x1 = x1_t.data_ptr<T>(), *y1 = y1_t.data_ptr<T>();
  const T *x2 = x2_t.data_ptr<T>(), *y2 = y2_t.data_ptr<T>();
  const T* areas = areas_t.data_ptr<T>();
  const int64_t* order = order_t.data_ptr<int64_t>();

  std::vector<char> suppressed(n, 0);
  auto keep_t = torch::empty({n}, boxes.options().dtype(torch::kLong));
  int64_t* keep = keep_t.data_ptr<int64_t>();
  int64_t kept = 0;
  for (int64_t a = 0; a < n; ++a) {
    const int64_t i = order[a];
    if (suppressed[i]) continue;
    keep[kept++] = i;
    for (int64_t b = a + 1; b < n; ++b) {
      const int64_t j = order[b];
      if (suppressed[j]) continue;
      const T w = std::max(T(0), std::min(x2[i], x2[j]) - std::max(x1[i], x1[j]));
      const T h = std::max(T(0), std::min(y2[i], y2[j]) - std::max(y1[i], y1[j]));
      const T inter = w * h;
      const T iou = inter / (areas[i] + areas[j] - inter);
      if (iou > iou_threshold) suppressed[j] = 1;  // strictly greater: IoU == threshold is kept
    }
  }
  return keep_t.narrow(0, 0, kept);
}

}  // namespace

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold) {
  if (boxes.size(0) == 0) return torch::empty({0}, boxes.options().dtype(torch::kLong));
  torch::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms",
                             [&] { keep = nms_impl<scalar_t>(boxes, scores, iou_threshold); });
  return keep;
}

}  // namespace instseg::ops::cpu
