// Times instseg::ops::roi_align (forward, forward + backward) against torchvision's CPU kernel on
// the same sizes and thread count: 4 FPN levels of an 800x1216 image, 256 channels, the box head
// (1000 RoIs, 7x7) and the mask head (100 RoIs, 14x14), sampling ratio 2; our forward also on
// channels-last maps (predict's fused path).
// torchvision runs in bench/roi_align_bench.py under /usr/bin/python3 within the same run.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "instseg/ops/roi_align.h"

namespace {

constexpr int64_t kImageH = 800, kImageW = 1216, kChannels = 256;

// Same recipe as the Python side: log-uniform sizes 16..600 px, levels 2..5 by LevelMapper.
std::vector<torch::Tensor> level_rois(int64_t num_rois, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto size = torch::exp(std::log(16.0) +
                               torch::rand({num_rois, 2}, gen) * std::log(600.0 / 16));  // [K, 2]
  const auto xy = torch::rand({num_rois, 2}, gen) * torch::tensor({float(kImageW), float(kImageH)});
  const auto boxes = torch::cat({xy, xy + size}, 1);
  const auto level =
      torch::floor(4 + torch::log2(torch::sqrt(size.select(1, 0) * size.select(1, 1)) / 224) + 1e-6)
          .clamp(2, 5);
  const auto rois = torch::cat({torch::zeros({num_rois, 1}), boxes}, 1);  // [K, 5]
  std::vector<torch::Tensor> out;
  for (int l = 2; l <= 5; ++l) out.push_back(rois.index({level == l}));
  return out;
}

void run(const std::vector<torch::Tensor>& features, const std::vector<torch::Tensor>& rois,
         int64_t pooled, bool backward) {
  std::vector<torch::Tensor> outs;
  for (size_t l = 0; l < features.size(); ++l) {
    instseg::ops::RoiAlignOptions o;
    o.pooled_height = o.pooled_width = pooled;
    o.spatial_scale = std::ldexp(1.0, -static_cast<int>(l + 2));
    o.sampling_ratio = 2;
    outs.push_back(instseg::ops::roi_align(features[l], rois[l], o));
  }
  if (backward) {
    std::vector<torch::Tensor> grads;
    for (const auto& o : outs) grads.push_back(torch::ones_like(o));
    torch::autograd::backward(outs, grads);
  }
}

template <typename F>
double median_ms(F fn, int repeats) {
  fn();  // warm-up: allocator, thread pool
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

// name -> {forward ms, forward+backward ms} from the torchvision script.
std::map<std::string, std::pair<double, double>> torchvision_times(int threads, int repeats) {
  const std::string cmd = "/usr/bin/python3 " INSTSEG_SOURCE_DIR "/bench/roi_align_bench.py " +
                          std::to_string(threads) + " " + std::to_string(repeats);
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("cannot run " + cmd);
  std::map<std::string, std::pair<double, double>> out;
  char line[256];
  while (std::fgets(line, sizeof line, pipe.get())) {
    std::istringstream in(line);
    std::string name;
    double fwd = 0, fwd_bwd = 0;
    if (in >> name >> fwd >> fwd_bwd) out[name] = {fwd, fwd_bwd};
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"RoIAlign: instseg vs torchvision (CPU)"};
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int repeats = 10;
  app.add_option("--threads", threads, "intra-op threads on both sides")
      ->check(CLI::PositiveNumber);
  app.add_option("--repeats", repeats, "timed runs per case (median reported)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  at::set_num_threads(threads);
  torch::manual_seed(0);
  std::vector<torch::Tensor> features;
  for (int l = 2; l <= 5; ++l) {
    features.push_back(
        torch::randn({1, kChannels, kImageH >> l, kImageW >> l}).requires_grad_(true));
  }
  // The same maps channels-last, as predict's fused path pools them (forward only).
  std::vector<torch::Tensor> features_last;
  for (const auto& f : features) features_last.push_back(f.detach().contiguous(at::MemoryFormat::ChannelsLast));
  const auto reference = torchvision_times(threads, repeats);
  std::printf("threads=%d repeats=%d (median ms)\n", threads, repeats);
  std::printf("%-22s %12s %12s %8s | %12s %12s %8s | %12s %8s\n", "case", "fwd ours", "fwd tv", "speedup",
              "f+b ours", "f+b tv", "speedup", "fwd ours CL", "speedup");
  for (const auto& [name, num_rois, pooled] :
       {std::tuple<std::string, int64_t, int64_t>{"box_head_1000x7x7", 1000, 7},
        {"mask_head_100x14x14", 100, 14}}) {
    const auto rois = level_rois(num_rois, 1);
    double fwd = 0, fwd_last = 0;
    {
      torch::NoGradGuard no_grad;
      fwd = median_ms([&] { run(features, rois, pooled, false); }, repeats);
      fwd_last = median_ms([&] { run(features_last, rois, pooled, false); }, repeats);
    }
    const double fwd_bwd = median_ms([&] { run(features, rois, pooled, true); }, repeats);
    const auto it = reference.find(name);
    if (it == reference.end()) {
      std::printf("%-22s %12.2f %12s %8s | %12.2f %12s %8s | %12.2f %8s\n", name.c_str(), fwd, "n/a", "",
                  fwd_bwd, "n/a", "", fwd_last, "");
      continue;
    }
    const auto [tv_fwd, tv_fwd_bwd] = it->second;
    std::printf("%-22s %12.2f %12.2f %7.2fx | %12.2f %12.2f %7.2fx | %12.2f %7.2fx\n", name.c_str(), fwd, tv_fwd,
                tv_fwd / fwd, fwd_bwd, tv_fwd_bwd, tv_fwd_bwd / fwd_bwd, fwd_last, tv_fwd / fwd_last);
  }
  return 0;
}
