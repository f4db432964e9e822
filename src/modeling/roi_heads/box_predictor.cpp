#include "instseg/modeling/roi_heads/box_predictor.h"

#include <torch/torch.h>

namespace instseg {

FastRcnnPredictorImpl::FastRcnnPredictorImpl(int64_t in_features, int64_t num_classes) {
  cls_score = register_module("cls_score", torch::nn::Linear(in_features, num_classes));
  bbox_pred = register_module("bbox_pred", torch::nn::Linear(in_features, num_classes * 4));
}

std::pair<torch::Tensor, torch::Tensor> FastRcnnPredictorImpl::forward(const torch::Tensor& x) {
  const auto flat = x.flatten(1);  // [R, F]
  // In the parameters' precision: detections and losses are computed from these (ops/mixed_precision.h).
  return {ops::linear(flat, cls_score->weight, cls_score->bias, linear_kernel).to(cls_score->weight.scalar_type()),
          ops::linear(flat, bbox_pred->weight, bbox_pred->bias, linear_kernel).to(bbox_pred->weight.scalar_type())};
}

}  // namespace instseg
