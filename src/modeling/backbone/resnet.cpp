#include "instseg/modeling/backbone/resnet.h"

#include <torch/torch.h>

#include <array>
#include <map>

#include "instseg/errors.h"
#include "instseg/modeling/layers/conv_norm_act.h"
#include "instseg/ops/conv2d.h"

namespace instseg {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  // Every ResNet convolution is followed by a norm layer, hence no bias.
  return nn::Conv2d(
      nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// conv then norm. With `fast` (ResNetImpl::set_fast_training): the convolution through
// ops::conv2d's Winograd kernels where they serve, and a frozen norm folded into it, its scale in
// the weights and its shift as bias: the same numbers within rounding and two passes over the
// activations (forward and backward) fewer. The weights are scaled on every call, so gradients
// still reach conv.weight.
torch::Tensor conv_norm(nn::Conv2dImpl& conv, nn::AnyModule& norm, const torch::Tensor& x, bool fast) {
  if (!fast) return norm.forward<torch::Tensor>(conv.forward(x));
  const auto& o = conv.options;
  const auto run = [&](const torch::Tensor& weight, const torch::Tensor& bias) {
    return ops::conv2d(x, weight, bias, (*o.stride())[0], (*c10::get<torch::ExpandingArray<2>>(o.padding()))[0],
                       (*o.dilation())[0], o.groups(), ops::ConvKernel::kWinograd);
  };
  auto* frozen = norm.ptr()->as<FrozenBatchNorm2dImpl>();
  if (frozen == nullptr) return norm.forward<torch::Tensor>(run(conv.weight, conv.bias));
  const auto [scale, shift] = frozen->scale_and_shift();
  return run(conv.weight * scale.view({-1, 1, 1, 1}), shift);
}

// ReLUs below run in place: nothing keeps the tensor they overwrite (a convolution keeps its
// input, not its output; batch norm its input and statistics), and a new activation-sized buffer
// per ReLU costs an allocation and its page faults.

// Shared by both block kinds: the shortcut projection when shape changes, and the closing ReLU.
class BlockBase : public nn::Module {
 public:
  void set_fast(bool fast) { fast_ = fast; }

 protected:
  ConvNormAct downsample_{nullptr};
  bool fast_ = false;

  // torchvision's downsample: "0" conv1x1 (carrying the stride), "1" norm, no activation.
  void make_downsample(int64_t in, int64_t out, int64_t stride, NormKind norm) {
    if (stride == 1 && in == out) return;
    downsample_ = register_module(
        "downsample",
        ConvNormAct(ConvNormActOptions(in, out, 1).stride(stride).norm(norm).relu(false)));
  }
  torch::Tensor finish(const torch::Tensor& residual, const torch::Tensor& x) {
    if (!downsample_) return (residual + x).relu_();
    auto& conv = *downsample_->ptr<nn::Conv2dImpl>(0);
    return (residual + conv_norm(conv, downsample_->begin()[1], x, fast_)).relu_();
  }
};

// ResNet-18/34: two 3x3 convolutions, expansion 1.
class BasicBlockImpl : public BlockBase {
 public:
  BasicBlockImpl(int64_t in, int64_t planes, int64_t stride, NormKind norm) {
    conv1_ = register_module("conv1", conv(in, planes, 3, stride));
    bn1_ = make_norm(norm, planes);
    register_module("bn1", bn1_.ptr());
    conv2_ = register_module("conv2", conv(planes, planes, 3, 1));
    bn2_ = make_norm(norm, planes);
    register_module("bn2", bn2_.ptr());
    make_downsample(in, planes, stride, norm);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = conv_norm(*conv1_, bn1_, x, fast_).relu_();
    y = conv_norm(*conv2_, bn2_, y, fast_);
    return finish(y, x);
  }

 private:
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  nn::AnyModule bn1_, bn2_;
};
TORCH_MODULE(BasicBlock);

// ResNet-50/101: 1x1 reduce, 3x3 (carries the stride, torchvision's "v1.5"), 1x1 expand x4.
class BottleneckImpl : public BlockBase {
 public:
  BottleneckImpl(int64_t in, int64_t planes, int64_t stride, NormKind norm) {
    const int64_t out = planes * 4;
    conv1_ = register_module("conv1", conv(in, planes, 1, 1));
    bn1_ = make_norm(norm, planes);
    register_module("bn1", bn1_.ptr());
    conv2_ = register_module("conv2", conv(planes, planes, 3, stride));
    bn2_ = make_norm(norm, planes);
    register_module("bn2", bn2_.ptr());
    conv3_ = register_module("conv3", conv(planes, out, 1, 1));
    bn3_ = make_norm(norm, out);
    register_module("bn3", bn3_.ptr());
    make_downsample(in, out, stride, norm);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = conv_norm(*conv1_, bn1_, x, fast_).relu_();
    y = conv_norm(*conv2_, bn2_, y, fast_).relu_();
    y = conv_norm(*conv3_, bn3_, y, fast_);
    return finish(y, x);
  }

 private:
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  nn::AnyModule bn1_, bn2_, bn3_;
};
TORCH_MODULE(Bottleneck);

const std::map<int, std::array<int, 4>>& blocks_per_stage() {
  static const std::map<int, std::array<int, 4>> table{
      {18, {2, 2, 2, 2}}, {34, {3, 4, 6, 3}}, {50, {3, 4, 6, 3}}, {101, {3, 4, 23, 3}}};
  return table;
}

bool uses_bottleneck(int depth) { return depth >= 50; }

}  // namespace

void ResNetOptions::validate() const {
  if (blocks_per_stage().count(depth) == 0) {
    throw ConfigError("backbone.depth must be one of 18, 34, 50, 101, got " +
                      std::to_string(depth));
  }
  if (norm == NormKind::kNone) {
    throw ConfigError("backbone.norm must be frozen_batch_norm, batch_norm or group_norm, got none");
  }
  if (stages < 1 || stages > 4) throw ConfigError("ResNet stages must be in [1, 4], got " + std::to_string(stages));
}

ResNetImpl::ResNetImpl(ResNetOptions options) : options_(options) {
  options_.validate();
  conv1_ = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
  bn1_ = make_norm(options_.norm, 64);
  register_module("bn1", bn1_.ptr());

  const bool bottleneck = uses_bottleneck(options_.depth);
  const auto& blocks = blocks_per_stage().at(options_.depth);
  int64_t in = 64;
  for (int stage = 0; stage < options_.stages; ++stage) {
    const int64_t planes = int64_t{64} << stage;
    nn::Sequential layer;
    for (int b = 0; b < blocks[stage]; ++b) {
      const int64_t stride = (stage > 0 && b == 0) ? 2 : 1;
      if (bottleneck) {
        layer->push_back(Bottleneck(in, planes, stride, options_.norm));
        in = planes * 4;
      } else {
        layer->push_back(BasicBlock(in, planes, stride, options_.norm));
        in = planes;
      }
    }
    layers_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
  }

  // torchvision's initialisation, for training from scratch; checkpoints overwrite it.
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    }
  }
}

void ResNetImpl::set_fast_training(bool on) {
  fast_training_ = on;
  for (auto& layer : layers_) {
    for (auto& block : layer->children()) block->as<BlockBase>()->set_fast(on);
  }
}

std::vector<torch::Tensor> ResNetImpl::forward(const torch::Tensor& x) {
  auto y = conv_norm(*conv1_, bn1_, x, fast_training_).relu_();  // [N, 64, H/2, W/2]
  y = torch::max_pool2d(y, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);  // [N, 64, H/4, W/4]
  std::vector<torch::Tensor> outputs;
  for (auto& layer : layers_) {
    y = layer->forward(y);
    outputs.push_back(y);
  }
  return outputs;
}

std::vector<int64_t> ResNetImpl::out_channels() const {
  const int64_t expansion = uses_bottleneck(options_.depth) ? 4 : 1;
  std::vector<int64_t> channels{64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion};
  channels.resize(options_.stages);
  return channels;
}

}  // namespace instseg
