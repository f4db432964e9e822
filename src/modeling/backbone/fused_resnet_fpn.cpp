#include "modeling/backbone/fused_resnet_fpn.h"

#include <torch/torch.h>

#include <string>

#include "instseg/common/stage_profile.h"
#include "instseg/modeling/backbone/resnet_fpn.h"
#include "modeling/layers/fold.h"

namespace instseg {
namespace {

namespace nn = torch::nn;

// The named submodules of a module, torchvision's dotted names.
class Modules {
 public:
  explicit Modules(nn::Module& root) : all_(root.named_modules()) {}
  nn::Module* find(const std::string& name) const {
    const auto* found = all_.find(name);
    return found == nullptr ? nullptr : found->get();
  }
  const nn::Conv2dImpl& conv(const std::string& name) const {
    auto* m = find(name);
    TORCH_CHECK(m != nullptr && m->as<nn::Conv2dImpl>() != nullptr, "FusedResnetFpn: no convolution ", name);
    return *m->as<nn::Conv2dImpl>();
  }

 private:
  torch::OrderedDict<std::string, std::shared_ptr<nn::Module>> all_;
};

}  // namespace

std::shared_ptr<const FusedResnetFpn> FusedResnetFpn::build(ResnetFpnImpl& backbone,
                                                            ops::InferencePrecision precision) {
  const Modules body(*backbone.body);
  auto fused = std::make_shared<FusedResnetFpn>();
  bool ok = true;
  auto fuse = [&](const std::string& conv, const std::string& norm, bool relu) {
    const nn::Module* n = body.find(norm);
    ok = ok && detail::foldable(n);
    return ok ? detail::fuse_conv(body.conv(conv), n, relu, precision, /*float_output=*/false) : ops::FusedConv2d();
  };
  fused->stem_ = fuse("conv1", "bn1", true);
  fused->returned_layers_ = backbone.options().returned_layers;
  for (int stage = 1; stage <= fused->returned_layers_.back(); ++stage) {
    std::vector<Block> blocks;
    for (int b = 0;; ++b) {
      const std::string prefix = "layer" + std::to_string(stage) + "." + std::to_string(b) + ".";
      if (body.find(prefix + "conv1") == nullptr) break;
      Block block;
      const int convs = body.find(prefix + "conv3") != nullptr ? 3 : 2;
      for (int c = 1; c <= convs; ++c) {
        // Every convolution ends in a ReLU; the last one's comes after the shortcut's add.
        block.convs.push_back(fuse(prefix + "conv" + std::to_string(c), prefix + "bn" + std::to_string(c), true));
      }
      if (body.find(prefix + "downsample") != nullptr) {
        block.downsample = fuse(prefix + "downsample.0", prefix + "downsample.1", false);
      }
      blocks.push_back(std::move(block));
    }
    fused->layers_.push_back(std::move(blocks));
  }
  const Modules fpn(*backbone.fpn);
  for (size_t i = 0; i < fused->returned_layers_.size(); ++i) {
    const std::string index = std::to_string(i);
    for (const auto& [list, out, float_output] :
         {std::make_tuple("inner_blocks.", &fused->inner_, false), std::make_tuple("layer_blocks.", &fused->outer_, true)}) {
      auto* block = fpn.find(std::string(list) + index);
      TORCH_CHECK(block != nullptr && block->as<ConvNormActImpl>() != nullptr, "FusedResnetFpn: no FPN block ", list,
                  index);
      auto conv = detail::fuse_block(*block->as<ConvNormActImpl>(), precision, float_output);
      ok = ok && conv.defined();
      out->push_back(conv);
    }
  }
  if (!ok) return nullptr;
  return fused;
}

FeatureMaps FusedResnetFpn::forward(const at::Tensor& images, StageProfile* profile) const {
  StageTimer body_timer(profile, "backbone.body");
  auto y = stem_.forward(images);
  y = at::max_pool2d(y, /*kernel_size=*/{3, 3}, /*stride=*/{2, 2}, /*padding=*/{1, 1});
  std::vector<at::Tensor> stages;
  for (const auto& blocks : layers_) {
    for (const auto& block : blocks) {
      auto shortcut = block.downsample.defined() ? block.downsample.forward(y) : y;
      // The last convolution adds into the shortcut's memory: the block's input, read by then, or
      // the downsample's output; never a level handed out.
      if (!stages.empty() && shortcut.is_same(stages.back())) shortcut = shortcut.clone();
      shortcut = shortcut.contiguous(at::MemoryFormat::ChannelsLast);
      auto z = y;
      for (size_t c = 0; c + 1 < block.convs.size(); ++c) z = block.convs[c].forward(z);
      y = block.convs.back().forward_add(z, std::move(shortcut));
    }
    stages.push_back(y);
  }
  std::vector<at::Tensor> levels;
  for (const int l : returned_layers_) levels.push_back(stages[l - 1]);
  body_timer.stop();

  StageTimer fpn_timer(profile, "backbone.fpn");
  const auto count = static_cast<int64_t>(levels.size());
  std::vector<at::Tensor> outputs(count);
  auto merged = inner_[count - 1].forward(levels[count - 1]);
  outputs[count - 1] = outer_[count - 1].forward(merged);
  for (int64_t i = count - 2; i >= 0; --i) {
    const auto& lateral_input = levels[i];
    auto top_down = at::upsample_nearest2d(merged, {lateral_input.size(2), lateral_input.size(3)})
                        .contiguous(at::MemoryFormat::ChannelsLast);
    merged = inner_[i].forward_add(lateral_input, std::move(top_down));
    outputs[i] = outer_[i].forward(merged);
  }
  FeatureMaps maps;
  for (int64_t i = 0; i < count; ++i) maps.push_back({std::to_string(i), outputs[i]});
  maps.push_back({"pool", at::max_pool2d(outputs.back(), {1, 1}, {2, 2})});
  return maps;
}

}  // namespace instseg
