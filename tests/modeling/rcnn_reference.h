#pragma once
// Shared by the RoI-head and Mask R-CNN tests: the torchvision values written by
// tests/reference/end_to_end.py (and returned_layers.py), a by-name copy of their state dicts into
// a module and the comparison of detections and masks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "instseg/modeling/roi_heads/paste_masks.h"
#include "instseg/structures/detections.h"
#include "instseg/structures/image_list.h"
#include "support/reference.h"

namespace instseg::testing {

using TensorDict = std::map<std::string, torch::Tensor>;

// <build>/reference/end_to_end/<name>.pt, e.g. "stages_v1".
inline TensorDict end_to_end_reference(const std::string& name) {
  return load_tensors(reference_dir("end_to_end") + "/" + name + ".pt");
}

inline bool is_batch_counter(const std::string& key) {
  return key.size() >= 19 && key.compare(key.size() - 19, 19, "num_batches_tracked") == 0;
}

// The module's parameters and buffers (num_batches_tracked excepted) are exactly `state`'s keys,
// with the same shapes: each key either side lacks and each shape that differs is a failure.
inline void expect_same_keys_and_shapes(const torch::nn::Module& module, const TensorDict& state) {
  TensorDict ours;
  for (const auto& p : module.named_parameters()) ours[p.key()] = p.value();
  for (const auto& b : module.named_buffers()) {
    if (!is_batch_counter(b.key())) ours[b.key()] = b.value();
  }
  for (const auto& [key, value] : state) {
    const auto it = ours.find(key);
    if (it == ours.end()) {
      ADD_FAILURE() << "model has no " << key;
    } else {
      EXPECT_EQ(it->second.sizes(), value.sizes()) << key;
    }
  }
  for (const auto& [key, value] : ours) EXPECT_TRUE(state.count(key)) << "torchvision has no " << key;
}

// Copies state[prefix + name] into every parameter and buffer of `module` (num_batches_tracked
// excepted). Fails the test on a missing key or a shape mismatch; returns the number copied.
inline int copy_state_counted(torch::nn::Module& module, const TensorDict& state,
                        const std::string& prefix = "") {
  torch::NoGradGuard no_grad;
  int copied = 0;
  auto copy = [&](const std::string& name, torch::Tensor& target) {
    if (is_batch_counter(name)) return;
    const auto it = state.find(prefix + name);
    if (it == state.end()) {
      ADD_FAILURE() << "state dict has no key " << prefix + name;
      return;
    }
    if (it->second.sizes() != target.sizes()) {
      ADD_FAILURE() << prefix + name << ": shape " << it->second.sizes() << ", module has "
                    << target.sizes();
      return;
    }
    target.copy_(it->second);
    ++copied;
  };
  for (auto& p : module.named_parameters()) copy(p.key(), p.value());
  for (auto& b : module.named_buffers()) copy(b.key(), b.value());
  return copied;
}

// The FPN maps "0".."3" saved by the stages dump.
inline FeatureMaps stage_features(const TensorDict& stages) {
  FeatureMaps features;
  for (const char* name : {"0", "1", "2", "3"}) features.push_back({name, stages.at(std::string("feat_") + name)});
  return features;
}

inline std::vector<std::array<int64_t, 2>> stage_image_sizes(const TensorDict& stages) {
  const auto sizes = stages.at("image_sizes");
  std::vector<std::array<int64_t, 2>> out;
  for (int64_t i = 0; i < sizes.size(0); ++i) {
    out.push_back({sizes[i][0].item<int64_t>(), sizes[i][1].item<int64_t>()});
  }
  return out;
}

// Per-image tensors saved as <prefix>0, <prefix>1, ...
inline std::vector<torch::Tensor> per_image(const TensorDict& d, const std::string& prefix) {
  std::vector<torch::Tensor> out;
  for (int i = 0; d.count(prefix + std::to_string(i)); ++i) out.push_back(d.at(prefix + std::to_string(i)));
  return out;
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// IoU of [N, 4] and [M, 4] (x1, y1, x2, y2) boxes in double: [N, M]. Written here rather than
// taken from instseg::ops so a fault there cannot hide in the comparison.
inline torch::Tensor pairwise_iou(const torch::Tensor& a, const torch::Tensor& b) {
  const auto x = a.to(torch::kDouble).unsqueeze(1), y = b.to(torch::kDouble).unsqueeze(0);  // [N, 1, 4], [1, M, 4]
  using torch::indexing::Slice;
  const auto lt = torch::max(x.index({"...", Slice(0, 2)}), y.index({"...", Slice(0, 2)}));
  const auto rb = torch::min(x.index({"...", Slice(2, 4)}), y.index({"...", Slice(2, 4)}));
  const auto wh = (rb - lt).clamp_min(0);
  const auto inter = wh.select(2, 0) * wh.select(2, 1);
  const auto area = [](const torch::Tensor& t) { return (t.select(2, 2) - t.select(2, 0)) * (t.select(2, 3) - t.select(2, 1)); };
  return inter / (area(x) + area(y) - inter);
}

// Every detection of `ours` (in its order, highest score first) paired with the unpaired
// torchvision detection of the same label and the highest box IoU. A floor of 0.5 only tells "no
// counterpart" from "a poor one": the callers assert the IoU of every pair far above it, and
// explain every detection left without a partner.
struct DetectionPairs {
  std::vector<std::pair<int64_t, int64_t>> pairs;  // (ours, theirs)
  std::vector<double> iou, score_diff;             // per pair
  std::vector<int64_t> only_ours, only_theirs;     // indices without a counterpart
  double min_iou() const { return iou.empty() ? 1.0 : *std::min_element(iou.begin(), iou.end()); }
  double max_score_diff() const {
    return score_diff.empty() ? 0.0 : *std::max_element(score_diff.begin(), score_diff.end());
  }
};

inline DetectionPairs pair_detections(const torch::Tensor& boxes, const torch::Tensor& scores,
                                      const torch::Tensor& labels, const torch::Tensor& ref_boxes,
                                      const torch::Tensor& ref_scores, const torch::Tensor& ref_labels) {
  DetectionPairs p;
  const int64_t n = boxes.size(0), r = ref_boxes.size(0);
  const auto iou = pairwise_iou(boxes, ref_boxes);
  const auto same_label = labels.view({-1, 1}) == ref_labels.view({1, -1});
  const auto candidates = torch::where(same_label, iou, torch::full_like(iou, -1.0));
  const auto q = candidates.accessor<double, 2>();
  const auto s = scores.to(torch::kDouble), rs = ref_scores.to(torch::kDouble);
  std::vector<bool> used(r, false);
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = -1;
    for (int64_t j = 0; j < r; ++j) {
      if (!used[j] && q[i][j] > 0.5 && (best < 0 || q[i][j] > q[i][best])) best = j;
    }
    if (best < 0) {
      p.only_ours.push_back(i);
      continue;
    }
    used[best] = true;
    p.pairs.emplace_back(i, best);
    p.iou.push_back(q[i][best]);
    p.score_diff.push_back(std::abs(s[i].item<double>() - rs[best].item<double>()));
  }
  for (int64_t j = 0; j < r; ++j) {
    if (!used[j]) p.only_theirs.push_back(j);
  }
  return p;
}

// Asserts every pair within `max_iou_loss` (1 - IoU) and `max_score_diff`, and that a detection
// on one side only is explained by the cut: its score lies within `max_score_diff` of the
// lowest score the other side kept (the detection count cap) or of `score_thresh`.
inline void expect_same_detections(const torch::Tensor& boxes, const torch::Tensor& scores,
                                   const torch::Tensor& labels, const torch::Tensor& ref_boxes,
                                   const torch::Tensor& ref_scores, const torch::Tensor& ref_labels,
                                   double max_iou_loss, double max_score_diff, const std::string& where,
                                   double score_thresh = 0.05) {
  const auto p = pair_detections(boxes, scores, labels, ref_boxes, ref_scores, ref_labels);
  EXPECT_GE(p.min_iou(), 1 - max_iou_loss) << where;
  EXPECT_LE(p.max_score_diff(), max_score_diff) << where;
  const auto explained = [&](double score, const torch::Tensor& other_scores) {
    const double cut = other_scores.numel() ? other_scores.min().item<double>() : score_thresh;
    return std::abs(score - cut) <= max_score_diff || std::abs(score - score_thresh) <= max_score_diff;
  };
  // What the nearest same-label box on the other side is, for the message.
  const auto nearest = [](const torch::Tensor& box, int64_t label, const torch::Tensor& others,
                          const torch::Tensor& other_labels, const torch::Tensor& other_scores) {
    const auto iou = torch::where(other_labels == label, pairwise_iou(box.view({1, 4}), others)[0],
                                  torch::zeros({others.size(0)}, torch::kDouble));
    if (iou.numel() == 0) return std::string("none");
    const int64_t k = iou.argmax().item<int64_t>();
    std::ostringstream s;
    s << box << "; nearest same-label box " << k << " " << others[k] << " IoU " << iou[k].item<double>()
      << " score " << other_scores[k].item<double>();
    return s.str();
  };
  for (const int64_t i : p.only_ours) {
    EXPECT_TRUE(explained(scores[i].item<double>(), ref_scores))
        << where << ": detection " << i << " (label " << labels[i].item<int64_t>() << ", score "
        << scores[i].item<double>() << ") has no torchvision counterpart: "
        << nearest(boxes[i], labels[i].item<int64_t>(), ref_boxes, ref_labels, ref_scores);
  }
  for (const int64_t j : p.only_theirs) {
    EXPECT_TRUE(explained(ref_scores[j].item<double>(), scores))
        << where << ": torchvision detection " << j << " (label " << ref_labels[j].item<int64_t>()
        << ", score " << ref_scores[j].item<double>() << ") has no counterpart: "
        << nearest(ref_boxes[j], ref_labels[j].item<int64_t>(), boxes, labels, scores);
  }
  EXPECT_LE(p.only_ours.size() + p.only_theirs.size(), 2u) << where;
}

// Masks saved bit-packed by end_to_end.py's pack_bits: [K, ceil(H W / 8)] uint8 -> [K, H, W] bool.
inline torch::Tensor unpack_bits(const torch::Tensor& packed, int64_t height, int64_t width) {
  const auto weights = torch::tensor({128, 64, 32, 16, 8, 4, 2, 1}, torch::kUInt8);
  const auto bits = packed.unsqueeze(2).bitwise_and(weights).ne(0).view({packed.size(0), -1});
  return bits.narrow(1, 0, height * width).view({packed.size(0), height, width});
}

// Every detection of one image against torchvision's, as end_to_end.py's e2e_*.pt and
// returned_layers.py's e2e.pt save them (boxes_<i>, scores_<i>, labels_<i>, box_masks_<i>,
// mask_bits_<i>, cut at 100 detections): paired by label and best box IoU, each pair within the
// tolerances below, a detection on one side only explained by the 100-detection cut
// (expect_same_detections). Every mask twice: its 28x28 probabilities (what the RoI heads hand to
// the paste) by max |difference|, and the pasted mask binarised at 0.5 (as the COCO output
// thresholds it) pixel by pixel, both as saved for every detection.
struct DetectionTolerance {
  double iou_loss, score, box_mask, pasted_pixels;
};
// Measured on end_to_end.py's models (LibTorch 1.13, v1 and v2, 300 detections each): 1 - IoU
// <= 6e-6, |score difference| <= 9e-6, 28x28 probabilities <= 6e-6, pasted masks: at most 1 pixel
// differs in any mask. The bounds leave >10x room for another summation order and stay far below
// what a fault moves: a one-pixel shift of the paste changed 1228-7174 pixels of a mask,
// autocast-free or NMS faults move IoUs and scores by > 0.1, a 1% scaling of the probabilities
// moves them by up to 0.01.
constexpr DetectionTolerance kDetectionTolerance{1e-4, 1e-4, 1e-4, 4};

inline void expect_matches_reference(const Detections& ours, const MaskPaster& paster, const TensorDict& ref,
                                     int image) {
  const auto key = [&](const char* name) { return std::string(name) + "_" + std::to_string(image); };
  const std::string where = "image " + std::to_string(image);
  const auto& boxes = ref.at(key("boxes"));
  ASSERT_EQ(boxes.size(0), 100) << "the reference should be cut at 100 detections";
  expect_same_detections(ours.boxes, ours.scores, ours.labels, boxes, ref.at(key("scores")), ref.at(key("labels")),
                         kDetectionTolerance.iou_loss, kDetectionTolerance.score, where);

  const auto& box_masks = ref.at(key("box_masks"));  // [100, 1, 28, 28]
  const int64_t height = paster.height(), width = paster.width();
  const auto bits = unpack_bits(ref.at(key("mask_bits")), height, width);  // [100, H, W]
  ASSERT_EQ(ours.masks.sizes(), (std::vector<int64_t>{ours.boxes.size(0), 1, 28, 28}));
  const auto p = pair_detections(ours.boxes, ours.scores, ours.labels, boxes, ref.at(key("scores")),
                                 ref.at(key("labels")));
  double worst_probs = 0, worst_pixels = 0;
  int64_t foreground = 0;
  for (const auto& [mine, theirs] : p.pairs) {
    worst_probs = std::max(worst_probs, max_abs_diff(ours.masks[mine], box_masks[theirs]));
    const MaskRegion region = paster.paste(mine);
    auto pasted = torch::zeros({height, width}, torch::kBool);
    using torch::indexing::Slice;
    pasted.index({Slice(region.y, region.y + region.probs.size(0)), Slice(region.x, region.x + region.probs.size(1))})
        .copy_(region.probs > 0.5);
    const int64_t differing = (pasted != bits[theirs]).sum().item<int64_t>();
    worst_pixels = std::max<double>(worst_pixels, differing);
    foreground += bits[theirs].sum().item<int64_t>();
  }
  EXPECT_LE(worst_probs, kDetectionTolerance.box_mask) << where << ": max |28x28 probability difference|";
  EXPECT_LE(worst_pixels, kDetectionTolerance.pasted_pixels) << where << ": most pixels differing in one pasted mask";
  // Not a trivial comparison: the masks are far from flat and cover many pixels.
  EXPECT_GT(box_masks.std().item<double>(), 0.1) << where;
  EXPECT_GT(foreground, 100 * 200) << where;
}

// uint8 [3, H, W] as torchvision's input: image.float() / 255.
inline torch::Tensor input_image(const torch::Tensor& image) { return image.to(torch::kFloat) / 255; }

}  // namespace instseg::testing
