// RoIAlign front: argument checks, device dispatch and the autograd wiring.
#include "instseg/ops/roi_align.h"

#include <torch/torch.h>

#include <cmath>

#include "ops/cpu/kernels.h"

namespace instseg::ops {
namespace {

void check_cpu(const torch::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), "roi_align: not implemented on ", t.device(),
              " (CPU kernel only); move input and rois to the CPU");
}

void check_arguments(const torch::Tensor& input, const torch::Tensor& rois,
                     const RoiAlignOptions& o) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must be [N, C, H, W], got ", input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "roi_align: rois must be [K, 5] (batch_index, x1, y1, x2, y2), got ", rois.sizes());
  TORCH_CHECK(input.scalar_type() == torch::kFloat || input.scalar_type() == torch::kDouble,
              "roi_align: input must be float or double, got ", input.scalar_type());
  TORCH_CHECK(rois.scalar_type() == input.scalar_type(), "roi_align: rois dtype ",
              rois.scalar_type(), " differs from input dtype ", input.scalar_type());
  TORCH_CHECK(rois.device() == input.device(), "roi_align: rois on ", rois.device(),
              " but input on ", input.device());
  TORCH_CHECK(o.pooled_height > 0 && o.pooled_width > 0,
              "roi_align: pooled size must be positive, got ", o.pooled_height, "x",
              o.pooled_width);
  TORCH_CHECK(o.sampling_ratio >= 0, "roi_align: sampling_ratio must be >= 0, got ",
              o.sampling_ratio);
  TORCH_CHECK(std::isfinite(o.spatial_scale) && o.spatial_scale > 0,
              "roi_align: spatial_scale must be positive, got ", o.spatial_scale);
  check_cpu(input);
  if (rois.size(0) > 0) {
    // The kernel indexes the batch with these; an out-of-range index would read foreign memory.
    const auto batch = rois.select(1, 0);
    const double lo = batch.min().item<double>(), hi = batch.max().item<double>();
    TORCH_CHECK(lo >= 0 && hi < static_cast<double>(input.size(0)),
                "roi_align: rois batch indices must be in [0, ", input.size(0), "), got [", lo,
                ", ", hi, "]");
  }
}

// Gradient flows into `input` only; torchvision's roi_align does not differentiate the boxes.
class RoiAlignFunction : public torch::autograd::Function<RoiAlignFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& rois, const RoiAlignOptions& options) {
    ctx->save_for_backward({rois});
    ctx->saved_data["input_sizes"] = input.sizes().vec();
    ctx->saved_data["pooled_height"] = options.pooled_height;
    ctx->saved_data["pooled_width"] = options.pooled_width;
    ctx->saved_data["spatial_scale"] = options.spatial_scale;
    ctx->saved_data["sampling_ratio"] = options.sampling_ratio;
    ctx->saved_data["aligned"] = options.aligned;
    return cpu::roi_align_forward(input, rois, options);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    RoiAlignOptions options;
    options.pooled_height = ctx->saved_data["pooled_height"].toInt();
    options.pooled_width = ctx->saved_data["pooled_width"].toInt();
    options.spatial_scale = ctx->saved_data["spatial_scale"].toDouble();
    options.sampling_ratio = ctx->saved_data["sampling_ratio"].toInt();
    options.aligned = ctx->saved_data["aligned"].toBool();
    const auto sizes = ctx->saved_data["input_sizes"].toIntVector();
    const auto rois = ctx->get_saved_variables()[0];
    check_cpu(grads[0]);
    auto grad_input = cpu::roi_align_backward(grads[0], rois, options, sizes);
    return {grad_input, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor roi_align(const torch::Tensor& input, const torch::Tensor& rois,
                        const RoiAlignOptions& options) {
  // Features computed in bfloat16 (ops/mixed_precision.h) are pooled in the boxes' precision, as
  // torchvision's autocast rule for roi_align does; the cast carries the gradient back.
  const bool reduced = input.scalar_type() == torch::kBFloat16 || input.scalar_type() == torch::kHalf;
  const auto pooled_input = reduced ? input.to(rois.scalar_type()) : input;
  check_arguments(pooled_input, rois, options);
  return RoiAlignFunction::apply(pooled_input, rois, options);
}

}  // namespace instseg::ops
