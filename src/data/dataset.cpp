#include "instseg/data/dataset.h"

#include <torch/torch.h>

namespace instseg::data {

Targets empty_targets(int64_t height, int64_t width) {
  return Targets{torch::zeros({0, 4}, torch::kFloat), torch::zeros({0}, torch::kInt64),
                 torch::zeros({0, height, width}, torch::kUInt8)};
}

torch::Tensor mask_boxes(const torch::Tensor& masks) {
  TORCH_CHECK(masks.dim() == 3, "mask_boxes: expected [G, H, W], got ", masks.sizes());
  const int64_t h = masks.size(1), w = masks.size(2);
  const auto cols = masks.ne(0).any(1);  // [G, W]
  const auto rows = masks.ne(0).any(2);  // [G, H]
  // First true index = argmax of the 0/1 row; last = size - 1 - argmax of the reversed row.
  const auto first = [](const torch::Tensor& t) { return t.to(torch::kUInt8).argmax(1); };
  const auto x1 = first(cols), y1 = first(rows);
  const auto x2 = w - first(cols.flip(1)), y2 = h - first(rows.flip(1));
  const auto boxes = torch::stack({x1, y1, x2, y2}, 1).to(torch::kFloat);
  return boxes * cols.any(1, /*keepdim=*/true).to(torch::kFloat);  // empty masks -> zeros
}

}  // namespace instseg::data
