// NMS front: argument checks, device dispatch, and batched NMS as torchvision.ops.batched_nms.
#include "instseg/ops/nms.h"

#include <torch/torch.h>

#include "ops/cpu/kernels.h"

namespace instseg::ops {
namespace {

void check_boxes_scores(const char* op, const torch::Tensor& boxes, const torch::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op, ": boxes must be [K, 4], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0), op,
              ": scores must be [K] with K = ", boxes.size(0), ", got ", scores.sizes());
  TORCH_CHECK(boxes.scalar_type() == torch::kFloat || boxes.scalar_type() == torch::kDouble, op,
              ": boxes must be float or double, got ", boxes.scalar_type());
  TORCH_CHECK(scores.scalar_type() == boxes.scalar_type(), op, ": scores dtype ",
              scores.scalar_type(), " differs from boxes dtype ", boxes.scalar_type());
  TORCH_CHECK(scores.device() == boxes.device(), op, ": scores on ", scores.device(),
              " but boxes on ", boxes.device());
}

// No device kernel: NMS is sequential and small (post-top-k), the copy costs little.
torch::Tensor run_kernel(const torch::Tensor& boxes, const torch::Tensor& scores, const torch::Tensor& groups,
                         double iou_threshold, int64_t max_keep) {
  if (boxes.device().is_cpu()) return cpu::nms(boxes, scores, groups, iou_threshold, max_keep);
  return cpu::nms(boxes.cpu(), scores.cpu(), groups.defined() ? groups.cpu() : groups, iou_threshold, max_keep)
      .to(boxes.device());
}

}  // namespace

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold) {
  check_boxes_scores("nms", boxes, scores);
  return run_kernel(boxes, scores, {}, iou_threshold, -1);
}

torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                          const torch::Tensor& groups, double iou_threshold, int64_t max_keep) {
  check_boxes_scores("batched_nms", boxes, scores);
  TORCH_CHECK(groups.dim() == 1 && groups.size(0) == boxes.size(0),
              "batched_nms: groups must be [K] with K = ", boxes.size(0), ", got ", groups.sizes());
  TORCH_CHECK(!groups.is_floating_point(), "batched_nms: groups must be integer, got ",
              groups.scalar_type());
  if (boxes.size(0) == 0) return torch::empty({0}, boxes.options().dtype(torch::kLong));
  // torchvision switches at numel > 4000 on the CPU (20000 elsewhere) from one NMS over boxes
  // offset per group to one NMS per group. Both are reproduced, so that rounding and the order
  // among equal scores come out as torchvision's for that size.
  const int64_t limit = boxes.device().is_cpu() ? 4000 : 20000;
  if (boxes.numel() <= limit) {
    // The offset boxes only matter for their rounding: the kernel never compares across groups.
    const auto offsets = groups.to(boxes.options()) * (boxes.max() + 1);  // [K]
    return run_kernel(boxes + offsets.unsqueeze(1), scores, groups, iou_threshold, max_keep);
  }
  auto keep = std::get<0>(run_kernel(boxes, scores, groups, iou_threshold, max_keep).sort());
  // torchvision orders the union of the groups' results, taken in index order, with the default
  // (unstable) sort of their scores; the same call gives the same order among equal scores.
  return keep.index_select(0, std::get<1>(scores.index_select(0, keep).sort(0, true)));
}

}  // namespace instseg::ops
