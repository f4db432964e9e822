#include "instseg/checkpoint/describe.h"

#include <torch/torch.h>

#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "instseg/errors.h"

namespace instseg {
namespace {

const torch::Tensor* find(const StateDict& sd, const std::string& key) {
  for (const auto& [k, t] : sd) {
    if (k == key) return &t;
  }
  return nullptr;
}

// Rows of a classifier weight ([classes, features]); the file's shape is not trusted.
int class_count(const torch::Tensor& weight, const std::string& key, const std::string& source) {
  if (weight.dim() != 2 || weight.size(0) < 1 || weight.size(0) > std::numeric_limits<int>::max()) {
    std::ostringstream shape;
    shape << weight.sizes();
    throw CheckpointError(source + ": '" + key + "' has shape " + shape.str() + ", expected [classes, features]");
  }
  return static_cast<int>(weight.size(0));
}

// The block index N of "<layer3>N.rest", or -1 (std::atoi's overflow on a long number is undefined).
int block_index(const std::string& key, size_t start) {
  int n = 0;
  size_t i = start;
  for (; i < key.size() && i < start + 6 && key[i] >= '0' && key[i] <= '9'; ++i) n = n * 10 + (key[i] - '0');
  return i > start && i < key.size() && key[i] == '.' ? n : -1;
}

// ResNet depth from the number of blocks in layer3 and the block type (bottlenecks have conv3).
int resnet_depth(const StateDict& sd, const std::string& prefix, const std::string& source) {
  const std::string layer3 = prefix + "layer3.";
  std::set<int> blocks;
  for (const auto& [k, t] : sd) {
    if (k.compare(0, layer3.size(), layer3) != 0) continue;
    if (const int block = block_index(k, layer3.size()); block >= 0) blocks.insert(block);
  }
  const bool bottleneck = find(sd, prefix + "layer1.0.conv3.weight") != nullptr;
  static const std::map<std::pair<bool, size_t>, int> kDepth = {
      {{false, 2}, 18}, {{false, 6}, 34}, {{true, 6}, 50}, {{true, 23}, 101}, {{true, 36}, 152}};
  auto it = kDepth.find({bottleneck, blocks.size()});
  if (it == kDepth.end()) {
    throw CheckpointError(source + ": unrecognised ResNet: '" + layer3 + "*' has " + std::to_string(blocks.size()) +
                          (bottleneck ? " bottleneck" : " basic") + " blocks");
  }
  return it->second;
}

std::string first_keys(const StateDict& sd) {
  std::string out;
  for (size_t i = 0; i < sd.size() && i < 5; ++i) out += (i ? ", '" : "'") + sd[i].first + "'";
  return sd.size() > 5 ? out + ", ..." : out;
}

}  // namespace

CheckpointInfo describe_checkpoint(const StateDict& sd, const std::string& source) {
  CheckpointInfo info;
  if (const auto* cls = find(sd, "roi_heads.box_predictor.cls_score.weight")) {
    info.has_masks = find(sd, "roi_heads.mask_predictor.mask_fcn_logits.weight") != nullptr;
    info.kind = info.has_masks ? CheckpointKind::kMaskRcnn : CheckpointKind::kFasterRcnn;
    info.num_classes = class_count(*cls, "roi_heads.box_predictor.cls_score.weight", source);
    if (find(sd, "rpn.head.conv.1.0.weight") && find(sd, "roi_heads.box_head.0.0.weight")) {
      info.version = 2;
    } else if (find(sd, "roi_heads.box_head.fc6.weight")) {
      info.version = 1;
    } else {
      throw CheckpointError(source + ": detector checkpoint with unrecognised heads (neither "
                            "'roi_heads.box_head.fc6.weight' (v1) nor 'roi_heads.box_head.0.0.weight' (v2))");
    }
    info.depth = resnet_depth(sd, "backbone.body.", source);
    return info;
  }
  if (find(sd, "conv1.weight") && find(sd, "layer1.0.conv1.weight") && find(sd, "fc.weight")) {
    info.kind = CheckpointKind::kImageNetResNet;
    info.num_classes = class_count(*find(sd, "fc.weight"), "fc.weight", source);
    info.depth = resnet_depth(sd, "", source);
    return info;
  }
  throw CheckpointError(source + ": not a torchvision Mask R-CNN, Faster R-CNN or ResNet checkpoint: it has neither "
                        "'roi_heads.box_predictor.cls_score.weight' nor 'fc.weight' (" + std::to_string(sd.size()) +
                        " keys: " + first_keys(sd) + ")");
}

CheckpointInfo require_mask_rcnn(const StateDict& sd, const std::string& source) {
  const CheckpointInfo info = describe_checkpoint(sd, source);
  if (info.kind == CheckpointKind::kImageNetResNet) {
    throw CheckpointError(source + ": is an ImageNet " + to_string(info) +
                          " classification checkpoint, not a Mask R-CNN detector; it can only initialise the backbone");
  }
  if (info.kind == CheckpointKind::kFasterRcnn) {
    throw CheckpointError(source + ": is a " + to_string(info) +
                          " checkpoint without a mask head ('roi_heads.mask_predictor.*'); a Mask R-CNN is needed");
  }
  return info;
}

std::string to_string(const CheckpointInfo& info) {
  const std::string backbone = "ResNet-" + std::to_string(info.depth);
  switch (info.kind) {
    case CheckpointKind::kImageNetResNet:
      return backbone + " (" + std::to_string(info.num_classes) + " classes)";
    case CheckpointKind::kMaskRcnn:
    case CheckpointKind::kFasterRcnn:
      break;
  }
  return std::string(info.has_masks ? "Mask" : "Faster") + " R-CNN v" + std::to_string(info.version) + ", " +
         backbone + "-FPN, " + std::to_string(info.num_classes) + " classes";
}

}  // namespace instseg
