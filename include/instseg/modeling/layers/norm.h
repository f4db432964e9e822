#pragma once
// Normalisation layers shared by the backbone, the FPN, the RPN and the heads: which kind a model
// uses (NormKind, with its config vocabulary) and a factory building one.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <string>
#include <utility>

namespace instseg {

// Normalisation after a convolution, chosen per model. Config names in brackets.
enum class NormKind {
  kNone,             // [none] no normalisation (the convolution then has a bias)
  kFrozenBatchNorm,  // [frozen_batch_norm] torchvision's pretrained detection backbones
  kBatchNorm,        // [batch_norm] trainable statistics (torchvision's v2 FPN and heads)
  kGroupNorm,        // [group_norm] 32 groups, for training from scratch with small batches (Detectron2)
};

// The config name of a kind: "none", "frozen_batch_norm", "batch_norm", "group_norm".
std::string to_string(NormKind kind);
// The kind of a config name; throws ConfigError naming `key` (e.g. "model.backbone.norm") and the
// accepted names when `name` is none of them.
NormKind norm_kind_named(const std::string& name, const std::string& key);

// Batch norm with fixed statistics and affine terms, all stored as buffers so an optimiser never
// sees them (torchvision.ops.FrozenBatchNorm2d: pretrained detection backbones are fine-tuned with
// batches of 1-2 images, too small for batch statistics).
class FrozenBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit FrozenBatchNorm2dImpl(int64_t num_features, double eps = 1e-5);
  // x: [N, C, H, W] -> [N, C, H, W]
  torch::Tensor forward(const torch::Tensor& x);
  // forward(x) is x * scale + shift per channel: {scale, shift}, each [C]. A convolution followed
  // by this layer equals one convolution with weights scaled per output channel and `shift` as
  // its bias (ResNetImpl::set_fold_frozen_norm).
  std::pair<torch::Tensor, torch::Tensor> scale_and_shift() const;

  torch::Tensor weight, bias, running_mean, running_var;  // [C] each
  double eps() const { return eps_; }

 private:
  double eps_;
};
TORCH_MODULE(FrozenBatchNorm2d);

// torch's GroupNorm (same parameters and checkpoint keys), computed in the parameters' dtype when
// the input's differs: under bf16 autocast a convolution hands it bf16, and LibTorch 1.13's CPU
// kernel refuses an input and affine terms of different types. Its output is then float.
class GroupNormImpl : public torch::nn::GroupNormImpl {
 public:
  using torch::nn::GroupNormImpl::GroupNormImpl;
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(GroupNorm);

// A norm layer over `channels` channels of the given kind; kind must not be kNone.
torch::nn::AnyModule make_norm(NormKind kind, int64_t channels);

}  // namespace instseg
