#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <vector>

#include "instseg/modeling/layers/norm.h"

namespace instseg {

struct ResNetOptions {
  int depth = 50;                           // 18, 34 (basic blocks), 50, 101 (bottleneck blocks)
  NormKind norm = NormKind::kFrozenBatchNorm;  // torchvision's pretrained detection backbones
  int stages = 4;  // layer1..layer<stages> are built (a detector that uses only the first ones)
  void validate() const;                    // throws ConfigError naming backbone.depth / .norm
};

// torchvision's ResNet (v1.5: stride on the 3x3 convolution) without avgpool and fc. Children
// are named as torchvision's (conv1, bn1, layer1..layer4 with blocks "0", "1", ...), so its
// state dict keys map one to one.
class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(ResNetOptions options);

  // x: [N, 3, H, W] -> outputs of layer1..layer<stages>, [N, C_i, ~H / 2^(i+2), ~W / 2^(i+2)]
  std::vector<torch::Tensor> forward(const torch::Tensor& x);

  // Channels of the outputs: {256, 512, 1024, 2048} (bottleneck) or {64, ..., 512} (basic), the
  // first `stages` of them.
  std::vector<int64_t> out_channels() const;
  const ResNetOptions& options() const { return options_; }

  // With `on`, for training steps: 3x3 stride-1 convolutions through oneDNN's Winograd kernels
  // where they serve (ops::conv2d), and each convolution followed by frozen batch norm as one
  // convolution with the norm folded into its weights and bias (the norm would be two more passes
  // over every activation and its gradient). Within float rounding of the plain arithmetic; off by
  // default (torchvision's). Inference folds once at load instead (prepare_inference).
  void set_fast_training(bool on);
  bool fast_training() const { return fast_training_; }

 private:
  ResNetOptions options_;
  bool fast_training_ = false;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::AnyModule bn1_;
  std::vector<torch::nn::Sequential> layers_;
};
TORCH_MODULE(ResNet);

}  // namespace instseg
