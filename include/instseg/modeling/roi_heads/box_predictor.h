#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <utility>

#include "instseg/ops/linear.h"

namespace instseg {

// torchvision's FastRCNNPredictor: class logits and class-specific box deltas from the box
// head's features. Children cls_score, bbox_pred.
class FastRcnnPredictorImpl : public torch::nn::Module {
 public:
  FastRcnnPredictorImpl(int64_t in_features, int64_t num_classes);
  // x: [R, F] (or [R, F, 1, 1]) -> (class_logits [R, num_classes], box_deltas [R, 4 * num_classes])
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x);

  torch::nn::Linear cls_score{nullptr}, bbox_pred{nullptr};
  ops::LinearKernel linear_kernel = ops::LinearKernel::kLibTorch;  // RoiHeads::set_linear_kernel
};
TORCH_MODULE(FastRcnnPredictor);

}  // namespace instseg
