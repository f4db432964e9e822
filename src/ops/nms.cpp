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

// One NMS per group by offsetting each group's boxes beyond all others (a single kernel call).
torch::Tensor batched_nms_coordinate_trick(const torch::Tensor& boxes, const torch::Tensor& scores,
                                           const torch::Tensor& groups, double iou_threshold) {
  const auto max_coordinate = boxes.max();
  const auto offsets = groups.to(boxes.options()) * (max_coordinate + 1);  // [K]
  return nms(boxes + offsets.unsqueeze(1), scores, iou_threshold);
}

// One NMS call per group; exact whatever the coordinate range, and faster for many boxes.
torch::Tensor batched_nms_per_group(const torch::Tensor& boxes, const torch::Tensor& scores,
                                    const torch::Tensor& groups, double iou_threshold) {
  auto keep_mask = torch::zeros_like(scores, torch::kBool);  // [K]
  const auto ids = std::get<0>(torch::_unique(groups));
  for (int64_t g = 0; g < ids.size(0); ++g) {
    const auto members = torch::where(groups == ids[g])[0];
    const auto kept =
        nms(boxes.index_select(0, members), scores.index_select(0, members), iou_threshold);
    keep_mask.index_put_({members.index_select(0, kept)}, true);
  }
  const auto keep = torch::where(keep_mask)[0];
  // torchvision orders the result with the default (unstable) sort; the same call gives the
  // same order among equal scores.
  return keep.index_select(0, std::get<1>(scores.index_select(0, keep).sort(0, true)));
}

}  // namespace

torch::Tensor nms(const torch::Tensor& boxes, const torch::Tensor& scores, double iou_threshold) {
  check_boxes_scores("nms", boxes, scores);
  if (boxes.device().is_cpu()) return cpu::nms(boxes, scores, iou_threshold);
  // No device kernel: NMS is sequential and small (post-top-k), the copy costs little.
  return cpu::nms(boxes.cpu(), scores.cpu(), iou_threshold).to(boxes.device());
}

torch::Tensor batched_nms(const torch::Tensor& boxes, const torch::Tensor& scores,
                          const torch::Tensor& groups, double iou_threshold) {
  check_boxes_scores("batched_nms", boxes, scores);
  TORCH_CHECK(groups.dim() == 1 && groups.size(0) == boxes.size(0),
              "batched_nms: groups must be [K] with K = ", boxes.size(0), ", got ", groups.sizes());
  TORCH_CHECK(!groups.is_floating_point(), "batched_nms: groups must be integer, got ",
              groups.scalar_type());
  if (boxes.size(0) == 0) return torch::empty({0}, boxes.options().dtype(torch::kLong));
  // Same switch as torchvision (numel > 4000 on the CPU, 20000 elsewhere), so the results,
  // including the order among equal scores, are the ones torchvision gives for that size.
  const int64_t limit = boxes.device().is_cpu() ? 4000 : 20000;
  if (boxes.numel() > limit) return batched_nms_per_group(boxes, scores, groups, iou_threshold);
  return batched_nms_coordinate_trick(boxes, scores, groups, iou_threshold);
}

}  // namespace instseg::ops
