#include "instseg/checkpoint/torchvision_keys.h"

#include <regex>

namespace instseg {

StateDict upgrade_torchvision_keys(const StateDict& state_dict) {
  static const std::regex fpn(R"(^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$)");
  static const std::regex rpn(R"(^rpn\.head\.conv\.(weight|bias)$)");
  static const std::regex mask(R"(^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$)");
  StateDict out;
  out.reserve(state_dict.size());
  std::smatch m;
  for (const auto& [key, tensor] : state_dict) {
    std::string name = key;
    if (std::regex_match(key, m, fpn)) {
      name = m[1].str() + ".0." + m[2].str();
    } else if (std::regex_match(key, m, rpn)) {
      name = "rpn.head.conv.0.0." + m[1].str();
    } else if (std::regex_match(key, m, mask) && std::stoi(m[1].str()) >= 1) {
      name = "roi_heads.mask_head." + std::to_string(std::stoi(m[1].str()) - 1) + ".0." + m[2].str();
    }
    out.emplace_back(std::move(name), tensor);
  }
  return out;
}

StateDict imagenet_to_backbone(const StateDict& state_dict) {
  StateDict out;
  for (const auto& [key, tensor] : state_dict) {
    if (key.rfind("fc.", 0) == 0) continue;
    out.emplace_back("backbone.body." + key, tensor);
  }
  return out;
}

}  // namespace instseg
