#include "instseg/engine/stage_flops.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "instseg/common/stage_profile.h"
#include "instseg/modeling/transform.h"

namespace instseg {

namespace {

// RoIAlign output sides of the box and mask heads (torchvision's 7 and 14; roi_heads.cpp).
constexpr int64_t kBoxPool = 7;
constexpr int64_t kMaskPool = 14;

// A convolution's output side: floor((n + 2p - k) / s) + 1.
int64_t conv_out(int64_t n, int64_t kernel, int64_t stride, int64_t padding) {
  return (n + 2 * padding - kernel) / stride + 1;
}

// 2 * K * K * Cin * Cout * Hout * Wout
double conv_flops(int64_t kernel, int64_t in_channels, int64_t out_channels, int64_t out_h, int64_t out_w) {
  return 2.0 * static_cast<double>(kernel * kernel) * static_cast<double>(in_channels) *
         static_cast<double>(out_channels) * static_cast<double>(out_h) * static_cast<double>(out_w);
}

double linear_flops(int64_t in_features, int64_t out_features) {
  return 2.0 * static_cast<double>(in_features) * static_cast<double>(out_features);
}

struct Body {
  double flops = 0.0;
  std::vector<int64_t> channels;                // the outputs of the stages the FPN reads
  std::vector<std::array<int64_t, 2>> sizes;  // their [H, W]
};

// torchvision's ResNet v1.5 (stride on the 3x3 convolution of a bottleneck), up to the last of
// `returned` (1-based stages), whose outputs it lists.
Body resnet_body(int depth, const std::vector<int>& returned, int64_t height, int64_t width) {
  if (depth != 18 && depth != 34 && depth != 50 && depth != 101) {
    throw std::invalid_argument("resnet_body_flops: depth " + std::to_string(depth) + " (18, 34, 50, 101)");
  }
  const bool bottleneck = depth >= 50;
  const std::array<int, 4> blocks = depth == 18    ? std::array<int, 4>{2, 2, 2, 2}
                                    : depth == 101 ? std::array<int, 4>{3, 4, 23, 3}
                                                   : std::array<int, 4>{3, 4, 6, 3};
  Body body;
  int64_t h = conv_out(height, 7, 2, 3), w = conv_out(width, 7, 2, 3);
  body.flops += conv_flops(7, 3, 64, h, w);   // conv1
  h = conv_out(h, 3, 2, 1), w = conv_out(w, 3, 2, 1);  // maxpool
  int64_t in = 64;
  const int64_t expansion = bottleneck ? 4 : 1;
  for (int layer = 0; layer < returned.back(); ++layer) {
    const int64_t width_l = 64 << layer;
    const int64_t out = width_l * expansion;
    for (int b = 0; b < blocks[layer]; ++b) {
      const int64_t stride = (layer > 0 && b == 0) ? 2 : 1;
      const int64_t oh = conv_out(h, 3, stride, 1), ow = conv_out(w, 3, stride, 1);
      if (bottleneck) {
        body.flops += conv_flops(1, in, width_l, h, w);          // conv1 1x1
        body.flops += conv_flops(3, width_l, width_l, oh, ow);  // conv2 3x3, strided
        body.flops += conv_flops(1, width_l, out, oh, ow);      // conv3 1x1
      } else {
        body.flops += conv_flops(3, in, width_l, oh, ow);
        body.flops += conv_flops(3, width_l, width_l, oh, ow);
      }
      if (stride != 1 || in != out) body.flops += conv_flops(1, in, out, oh, ow);  // downsample
      in = out, h = oh, w = ow;
    }
    if (std::find(returned.begin(), returned.end(), layer + 1) != returned.end()) {
      body.channels.push_back(out);
      body.sizes.push_back({h, w});
    }
  }
  return body;
}

Body resnet_body(const BackboneOptions& backbone, std::array<int64_t, 2> input_size) {
  return resnet_body(backbone.depth, backbone.returned_layers, input_size[0], input_size[1]);
}

// The FPN's levels "0".."3" (the returned stages' sizes) and "pool" (max pool 1x1 stride 2 of the
// last).
std::vector<std::array<int64_t, 2>> fpn_level_sizes(const Body& body) {
  auto sizes = body.sizes;
  sizes.push_back({conv_out(sizes.back()[0], 1, 2, 0), conv_out(sizes.back()[1], 1, 2, 0)});
  return sizes;
}

int64_t anchors_per_location(const MaskRcnnOptions& options) {
  return static_cast<int64_t>(options.anchors.sizes.front().size() * options.anchors.aspect_ratios.front().size());
}

}  // namespace

void StageFlops::add(const std::string& stage, double f) {
  for (auto& entry : flops) {
    if (entry.first == stage) {
      entry.second += f;
      return;
    }
  }
  flops.emplace_back(stage, f);
}

void StageFlops::add(const StageFlops& other) {
  for (const auto& [stage, f] : other.flops) add(stage, f);
}

double StageFlops::of(const std::string& stage) const {
  for (const auto& entry : flops) {
    if (entry.first == stage) return entry.second;
  }
  return 0.0;
}

double StageFlops::total() const {
  double sum = 0.0;
  for (const auto& entry : flops) sum += entry.second;
  return sum;
}

std::array<int64_t, 2> padded_input_size(const MaskRcnnOptions& options, int64_t height, int64_t width) {
  const GeneralizedRcnnTransform transform(options.transform);
  const auto size = transform.resized_size(height, width, options.transform.min_size.back());
  const int64_t d = options.transform.size_divisible;
  return {(size[0] + d - 1) / d * d, (size[1] + d - 1) / d * d};
}

int64_t max_proposals(const MaskRcnnOptions& options, std::array<int64_t, 2> input_size) {
  const Body body = resnet_body(options.backbone, input_size);
  const int64_t a = anchors_per_location(options);
  int64_t candidates = 0;
  for (const auto& s : fpn_level_sizes(body)) candidates += std::min(options.rpn.pre_nms_top_n_test, a * s[0] * s[1]);
  return std::min(options.rpn.post_nms_top_n_test, candidates);
}

double resnet_body_flops(int depth, int64_t height, int64_t width) {
  return resnet_body(depth, {1, 2, 3, 4}, height, width).flops;
}

StageFlops stage_flops(const MaskRcnnOptions& options, std::array<int64_t, 2> input_size, int64_t proposals,
                       int64_t detections, bool fused) {
  const Body body = resnet_body(options.backbone, input_size);
  const int64_t c = options.backbone.out_channels;
  const auto levels = fpn_level_sizes(body);
  StageFlops f;
  f.add("transform", 0.0);
  f.add("backbone.body", body.flops);

  double fpn = 0.0;
  for (size_t l = 0; l < body.sizes.size(); ++l) {
    const auto [h, w] = body.sizes[l];
    fpn += conv_flops(1, body.channels[l], c, h, w);  // inner (lateral) 1x1
    fpn += conv_flops(3, c, c, h, w);                 // output 3x3
  }
  f.add("backbone.fpn", fpn);

  // Shared over the levels: conv_depth 3x3 convolutions, then objectness (A) and deltas (4A).
  const int64_t a = anchors_per_location(options);
  double rpn = 0.0;
  for (const auto& [h, w] : levels) {
    rpn += options.rpn.conv_depth * conv_flops(3, c, c, h, w);
    rpn += conv_flops(1, c, 5 * a, h, w);
  }
  f.add("rpn.head", rpn);
  f.add("rpn.proposals", 0.0);
  f.add("box.roi_align", 0.0);

  const auto& heads = options.roi_heads;
  const int64_t r = heads.representation_size;
  double box = 0.0;  // per proposal
  if (heads.box_head == BoxHeadKind::kTwoMlp) {
    box += linear_flops(c * kBoxPool * kBoxPool, r) + linear_flops(r, r);  // fc6, fc7
  } else {
    box += 4 * conv_flops(3, c, c, kBoxPool, kBoxPool) + linear_flops(c * kBoxPool * kBoxPool, r);
  }
  box += linear_flops(r, 5 * options.num_classes);  // cls_score (C) + bbox_pred (4C)
  f.add("box.head", box * static_cast<double>(proposals));
  f.add("box.postprocess", 0.0);
  f.add("mask.roi_align", 0.0);

  const int64_t m = heads.mask_channels;
  // Four 3x3 convolutions at 14x14 (the first from the FPN's channels).
  const double mask_head = conv_flops(3, c, m, kMaskPool, kMaskPool) + 3 * conv_flops(3, m, m, kMaskPool, kMaskPool);
  // conv5_mask, a 2x2 stride-2 transposed convolution: each input pixel meets 2*2 kernel taps
  // (the fused path's 1x1 convolution to 4 * channels, the same products).
  const double deconv = conv_flops(1, m, 4 * m, kMaskPool, kMaskPool);
  const int64_t classes = fused ? 1 : options.num_classes;
  const double logits = conv_flops(1, m, classes, 2 * kMaskPool, 2 * kMaskPool);
  const double k = static_cast<double>(detections);
  if (fused) {
    f.add("mask.head", (mask_head + deconv + logits) * k);
  } else {
    f.add("mask.head", mask_head * k);
    f.add("mask.predictor", (deconv + logits) * k);
  }
  f.add("paste", 0.0);
  return f;
}

double measured_conv_peak_gflops(ops::InferencePrecision precision, int repetitions) {
  torch::InferenceMode guard;
  torch::manual_seed(0);
  const int64_t channels = 256, height = 200, width = 304;
  ops::FusedConvOptions conv_options;
  conv_options.padding = 1;
  conv_options.precision = precision;
  const ops::FusedConv2d conv(torch::randn({channels, channels, 3, 3}) * 0.02, torch::zeros({channels}), conv_options);
  const auto dtype = precision == ops::InferencePrecision::kBFloat16 ? torch::kBFloat16 : torch::kFloat32;
  const auto x = torch::randn({1, channels, height, width}).to(dtype).contiguous(torch::MemoryFormat::ChannelsLast);
  conv.forward(x);  // warm-up: the primitive is created and the weights reordered on first use
  double best = 0.0;
  for (int i = 0; i < std::max(1, repetitions); ++i) {
    const auto start = std::chrono::steady_clock::now();
    conv.forward(x);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (best == 0.0 || s < best) best = s;
  }
  return conv_flops(3, channels, channels, height, width) / best / 1e9;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model, flags;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const auto value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && model.empty()) model = value;
    if (key == "flags" && flags.empty()) flags = " " + value + " ";
  }
  if (model.empty()) return "unknown";
  std::string extras;
  for (const char* flag : {"avx512_bf16", "amx_bf16"}) {
    if (flags.find(std::string(" ") + flag + " ") != std::string::npos) extras += (extras.empty() ? "" : ", ") + std::string(flag);
  }
  return extras.empty() ? model : model + " (" + extras + ")";
}

ProfileReport ProfileReport::make(const StageProfile& seconds, const StageFlops& flops, int64_t images,
                                  double model_seconds, double peak_gflops, std::string precision, std::string cpu) {
  ProfileReport report;
  report.images = images;
  report.peak_gflops = peak_gflops;
  report.precision = std::move(precision);
  report.cpu = std::move(cpu);
  const double n = static_cast<double>(std::max<int64_t>(images, 1));
  report.model_ms_per_image = 1e3 * model_seconds / n;
  for (const auto& [stage, s] : seconds.seconds) {
    Row row;
    row.stage = stage;
    row.ms_per_image = 1e3 * s / n;
    row.share = model_seconds > 0 ? s / model_seconds : 0.0;
    row.gflop_per_image = flops.of(stage) / 1e9 / n;
    row.gflops = s > 0 ? flops.of(stage) / 1e9 / s : 0.0;
    row.peak_share = peak_gflops > 0 ? row.gflops / peak_gflops : 0.0;
    report.stages_ms_per_image += row.ms_per_image;
    report.gflop_per_image += row.gflop_per_image;
    report.rows.push_back(row);
  }
  return report;
}

std::string ProfileReport::table() const {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "profile: %lld images, %s, %s; convolution peak %.1f GFLOP/s (3x3 256->256 on 200x304)\n",
                static_cast<long long>(images), precision.c_str(), cpu.c_str(), peak_gflops);
  out << line;
  std::snprintf(line, sizeof line, "%-16s %10s %7s %12s %9s %7s\n", "stage", "ms/image", "share", "GFLOP/image",
                "GFLOP/s", "% peak");
  out << line;
  for (const Row& r : rows) {
    if (r.gflop_per_image > 0) {
      std::snprintf(line, sizeof line, "%-16s %10.1f %6.1f%% %12.2f %9.1f %6.1f%%\n", r.stage.c_str(), r.ms_per_image,
                    100 * r.share, r.gflop_per_image, r.gflops, 100 * r.peak_share);
    } else {
      std::snprintf(line, sizeof line, "%-16s %10.1f %6.1f%% %12s %9s %7s\n", r.stage.c_str(), r.ms_per_image,
                    100 * r.share, "-", "-", "-");
    }
    out << line;
  }
  const double model_s = model_ms_per_image / 1e3;
  const double rate = model_s > 0 ? gflop_per_image / model_s : 0.0;
  std::snprintf(line, sizeof line, "%-16s %10.1f %6.1f%% %12.2f %9.1f %6.1f%%\n", "stages", stages_ms_per_image,
                model_ms_per_image > 0 ? 100 * stages_ms_per_image / model_ms_per_image : 0.0, gflop_per_image, rate,
                peak_gflops > 0 ? 100 * rate / peak_gflops : 0.0);
  out << line;
  std::snprintf(line, sizeof line, "%-16s %10.1f %6.1f%%\n", "model", model_ms_per_image, 100.0);
  out << line;
  if (proposals_per_image > 0) {
    out << "box.head counted at " << proposals_per_image << " proposals per image"
        << (proposals_counted ? "\n" : " (rpn.post_nms_top_n_test: an upper bound; NMS may leave fewer)\n");
  }
  return out.str();
}

std::string ProfileReport::json() const {
  nlohmann::json j;
  j["images"] = images;
  j["precision"] = precision;
  j["cpu"] = cpu;
  j["conv_peak_gflops"] = peak_gflops;
  j["model_ms_per_image"] = model_ms_per_image;
  j["stages_ms_per_image"] = stages_ms_per_image;
  j["gflop_per_image"] = gflop_per_image;
  j["box_head_proposals_per_image"] = proposals_per_image;
  j["box_head_proposals_counted"] = proposals_counted;
  j["stages"] = nlohmann::json::array();
  for (const Row& r : rows) {
    j["stages"].push_back({{"stage", r.stage},
                           {"ms_per_image", r.ms_per_image},
                           {"share", r.share},
                           {"gflop_per_image", r.gflop_per_image},
                           {"gflops", r.gflops},
                           {"peak_share", r.peak_share}});
  }
  return j.dump(2) + "\n";
}

}  // namespace instseg
