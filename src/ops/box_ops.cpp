#include "instseg/ops/box_ops.h"

#include <torch/torch.h>

namespace instseg::ops {

torch::Tensor box_area(const torch::Tensor& boxes) {
  return (boxes.select(1, 2) - boxes.select(1, 0)) * (boxes.select(1, 3) - boxes.select(1, 1));
}

}  // namespace instseg::ops
