#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>

namespace instseg {

// Batch norm with fixed statistics and affine terms, all stored as buffers so an optimiser never
// sees them (torchvision.ops.FrozenBatchNorm2d: pretrained detection backbones are fine-tuned with
// batches of 1-2 images, too small for batch statistics).
class FrozenBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit FrozenBatchNorm2dImpl(int64_t num_features, double eps = 1e-5);
  // x: [N, C, H, W] -> [N, C, H, W]
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias, running_mean, running_var;  // [C] each

 private:
  double eps_;
};
TORCH_MODULE(FrozenBatchNorm2d);

// Normalisation after a convolution, chosen per model.
enum class NormKind {
  kNone,             // no normalisation (the convolution then has a bias)
  kFrozenBatchNorm,  // torchvision's pretrained detection backbones
  kBatchNorm,        // trainable statistics (torchvision's v2 FPN and heads)
  kGroupNorm,        // 32 groups, for training from scratch with small batches (Detectron2)
};

std::string to_string(NormKind kind);

// A norm layer over `channels` channels of the given kind; kind must not be kNone.
torch::nn::AnyModule make_norm(NormKind kind, int64_t channels);

}  // namespace instseg
