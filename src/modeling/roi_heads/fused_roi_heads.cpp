#include "modeling/roi_heads/fused_roi_heads.h"

#include <torch/torch.h>

#include "instseg/modeling/roi_heads/roi_heads.h"
#include "modeling/layers/fold.h"

namespace instseg {
namespace {

namespace nn = torch::nn;

// [R, C, S, S] channels-last -> [R, S * S * C], a view of the same memory.
at::Tensor flatten_channels_last(const at::Tensor& x) {
  return x.contiguous(at::MemoryFormat::ChannelsLast).permute({0, 2, 3, 1}).reshape({x.size(0), -1});
}

}  // namespace

std::shared_ptr<const FusedRoiHeads> FusedRoiHeads::build(RoiHeadsImpl& heads, ops::InferencePrecision precision) {
  torch::NoGradGuard no_grad;
  auto fused = std::make_shared<FusedRoiHeads>();
  // Box head: ConvNormAct children (v2) then Linear ones, each Linear followed by a ReLU.
  int64_t channels = 0;
  for (const auto& child : heads.box_head.ptr()->children()) {
    if (const auto* block = child->as<ConvNormActImpl>()) {
      auto conv = detail::fuse_block(*block, precision, /*float_output=*/false);
      if (!conv.defined()) return nullptr;
      fused->box_convs.push_back(conv);
    } else if (const auto* linear = child->as<nn::LinearImpl>()) {
      auto weight = linear->weight.to(torch::kFloat);
      if (fused->box_fcs.empty()) {
        // Input columns from (c, h, w) to (h, w, c) order: the pooled map as it lies in memory.
        const int64_t in = weight.size(1);
        channels = heads.box_roi_pool().output_size();
        const int64_t c = in / (channels * channels);
        weight = weight.view({weight.size(0), c, channels, channels}).permute({0, 2, 3, 1}).reshape({weight.size(0), in});
      }
      fused->box_fcs.emplace_back(weight, linear->bias, /*relu=*/true, precision, /*float_output=*/false);
    }
  }
  const auto& predictor = *heads.box_predictor;
  fused->num_classes = predictor.cls_score->weight.size(0);
  fused->box_out = ops::FusedLinear(torch::cat({predictor.cls_score->weight, predictor.bbox_pred->weight}),
                                    torch::cat({predictor.cls_score->bias, predictor.bbox_pred->bias}),
                                    /*relu=*/false, precision, /*float_output=*/true);

  for (const auto& child : heads.mask_head->children()) {
    auto conv = detail::fuse_block(*child->as<ConvNormActImpl>(), precision, /*float_output=*/false);
    if (!conv.defined()) return nullptr;
    fused->mask_convs.push_back(conv);
  }
  // conv5_mask: out[o, 2h + i, 2w + j] = b[o] + sum_c x[c, h, w] W[c, o, i, j], i.e. a 1x1
  // convolution whose output channel (2 i + j) * O + o has weights W[:, o, i, j].
  const auto& up = *heads.mask_predictor->conv5_mask;
  const auto w = up.weight.to(torch::kFloat);  // [C_in, O, 2, 2]
  const int64_t out = w.size(1);
  const auto w1x1 = w.permute({2, 3, 1, 0}).reshape({4 * out, w.size(0), 1, 1});
  ops::FusedConvOptions options;
  options.relu = true;
  options.precision = precision;
  options.float_output = true;  // the per-class dot products below run in fp32
  fused->mask_upsample = ops::FusedConv2d(w1x1, up.bias.to(torch::kFloat).repeat({4}), options);
  const auto& logits = *heads.mask_predictor->mask_fcn_logits;
  fused->mask_logit_weight = logits.weight.to(torch::kFloat).flatten(1).contiguous();  // [classes, O]
  fused->mask_logit_bias = logits.bias.to(torch::kFloat).contiguous();
  return fused;
}

std::pair<at::Tensor, at::Tensor> FusedRoiHeads::predict_boxes(const at::Tensor& pooled) const {
  auto x = pooled;
  for (const auto& conv : box_convs) x = conv.forward(x);
  auto y = flatten_channels_last(x);
  for (const auto& fc : box_fcs) y = fc.forward(y);
  const auto out = box_out.forward(y);  // [R, classes + 4 classes]
  return {out.narrow(1, 0, num_classes).contiguous(), out.narrow(1, num_classes, 4 * num_classes).contiguous()};
}

at::Tensor FusedRoiHeads::predict_mask_logits(const at::Tensor& pooled, const at::Tensor& labels) const {
  auto x = pooled;
  for (const auto& conv : mask_convs) x = conv.forward(x);
  const auto up = mask_upsample.forward(x);  // [K, 4 O, S, S] channels-last, fp32, ReLU applied
  const int64_t k = up.size(0), s = up.size(2), o = up.size(1) / 4;
  const auto features = up.permute({0, 2, 3, 1}).reshape({k, s * s * 4, o});  // (h, w, i, j) rows
  const auto weight = mask_logit_weight.index_select(0, labels).unsqueeze(2);  // [K, O, 1]
  const auto logits = at::bmm(features, weight).view({k, s, s, 2, 2}) +
                      mask_logit_bias.index_select(0, labels).view({k, 1, 1, 1, 1});
  // (h, w, i, j) -> (2h + i, 2w + j)
  return logits.permute({0, 1, 3, 2, 4}).reshape({k, 1, 2 * s, 2 * s});
}

}  // namespace instseg
