// Inference speed: instseg's Mask R-CNN against torchvision's on the same checkpoint, images and
// thread count, measured in one run (issue 15's "Must show"). Per variant (v1, v2):
//   instseg fp32 (the fused path), instseg bf16 (when the CPU has AVX512-BF16), torchvision as
//   installed, and torchvision with instseg's memory policy (glibc told to keep freed memory, what
//   keep_freed_memory_in_process does: the fair comparison)
// each in its own process (so that each one's peak resident memory is its own): median seconds
// per image end to end (model time: transform to pasted masks), per-stage times with GFLOP/s
// against the machine's measured convolution rate (engine/stage_flops.h), peak RSS, ratios.
// The sides take turns for --rounds rounds (a shared host's speed drifts over minutes, so sides
// timed minutes apart are not comparable): each round's ratios are printed, and the headline is
// every side's median over all its rounds' images.
//
// usage: predict_bench [--variant v1,v2] [--weights W.pth] [--images N] [--threads T]
//                      [--precision fp32,bf16] [--rounds R] [--json OUT.json]
//   Without --weights a seeded random-init checkpoint per variant is made with
//   bench/make_checkpoint.py (batch-norm statistics measured on tiny_coco train images, so it
//   runs 1000 proposals and 100 detections like a trained model; in the temp folder, kept).
//   With --weights give its --variant.
//   Results and the command: docs/benchmarks.md, "Inference (predict)".
#include <sys/resource.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench_support.h"
#include "instseg/common/blas_threads.h"
#include "instseg/common/process_memory.h"
#include "instseg/common/stage_profile.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/predictor.h"
#include "instseg/engine/stage_flops.h"
#include "instseg/ops/mixed_precision.h"

namespace fs = std::filesystem;
using instseg::bench::median;
using instseg::bench::run_capture;
using nlohmann::json;

namespace {

const char* const kStages[] = {"transform",     "backbone.body",   "backbone.fpn",   "rpn.head",
                               "rpn.proposals", "box.roi_align",   "box.head",       "box.postprocess",
                               "mask.roi_align", "mask.head",      "paste"};

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

// The instseg side, in a process of its own (predict_bench --worker ...): the first image once as
// warm-up (first-call allocations, oneDNN primitives), then each image timed; prints one JSON
// line as bench/torchvision_predict.py does, plus the convolution peak in its precision.
int run_worker(const std::string& weights, const std::string& precision, int threads, int min_size, int max_size,
               const std::vector<std::string>& paths) {
  instseg::keep_freed_memory_in_process();  // as the instseg program does
  torch::set_num_threads(threads);
  instseg::set_openblas_threads(1);  // as the program sets it
  instseg::ModelOverrides overrides;
  overrides.min_size = min_size;
  overrides.max_size = max_size;
  overrides.precision = instseg::ops::inference_precision_named(precision, "--precision");
  auto model = instseg::load_mask_rcnn(weights, overrides);
  torch::InferenceMode guard;
  std::vector<torch::Tensor> decoded;
  for (const auto& p : paths) decoded.push_back(instseg::data::read_image_rgb(p));
  model->predict({decoded[0]});
  json out;
  out["seconds"] = json::array();
  out["stages"] = json::array();
  out["detections"] = json::array();
  for (const auto& image : decoded) {
    instseg::StageProfile profile;
    const auto start = std::chrono::steady_clock::now();
    const auto detections = model->predict({image}, &profile)[0];
    out["seconds"].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    json stages;
    for (const auto& [stage, s] : profile.seconds) stages[stage] = s;
    out["stages"].push_back(stages);
    out["detections"].push_back(detections.scores.size(0));
  }
  out["peak_rss_mb"] = peak_rss_mb();  // before the proposal count's and the peak measurement's own tensors
  // The proposals the box head ran on (NMS may leave fewer than post_nms_top_n_test): the same
  // stages again, untimed, for the GFLOP count.
  out["proposals"] = json::array();
  for (const auto& image : decoded) {
    const auto batch = model->transform().forward({image});
    const auto features = model->backbone()(batch.tensors);
    out["proposals"].push_back(model->rpn()->forward(batch, features)[0].size(0));
  }
  out["conv_peak_gflops"] = instseg::measured_conv_peak_gflops(overrides.precision);
  std::cout << out.dump() << std::endl;
  return 0;
}

struct Side {
  std::string name;
  json result;  // seconds, stages, detections, peak_rss_mb (drops the warm-up image's entries first)
  double conv_peak = 0.0;  // the rate its GFLOP/s are compared with
  std::string precision;   // instseg's --precision for its worker; empty for torchvision
  bool fused() const { return !precision.empty(); }  // instseg's fused path, not torchvision
};

// The side's GFLOP per image per stage: the arithmetic it computes for each image's size and
// detections (fused: the detected class's mask logits; torchvision: every class's).
instseg::StageFlops side_flops(const instseg::MaskRcnnOptions& options, const std::vector<std::array<int64_t, 2>>& sizes,
                               const json& result, bool fused) {
  instseg::StageFlops total;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto size = instseg::padded_input_size(options, sizes[i][0], sizes[i][1]);
    total.add(instseg::stage_flops(options, size, result["proposals"][i].get<int64_t>(),
                                   result["detections"][i].get<int64_t>(), fused));
  }
  instseg::StageFlops per_image;
  for (const auto& [stage, f] : total.flops) per_image.add(stage, f / static_cast<double>(sizes.size()));
  // The module path's mask predictor is timed within mask.head on both sides here.
  if (!fused) per_image.add("mask.head", per_image.of("mask.predictor"));
  return per_image;
}

double mean_stage(const json& stages, const std::string& stage) {
  double sum = 0.0;
  for (const auto& s : stages) sum += s.contains(stage) ? s[stage].get<double>() : 0.0;
  return stages.empty() ? 0.0 : sum / static_cast<double>(stages.size());
}

const char* const kPerImageKeys[] = {"seconds", "stages", "detections", "proposals", "input_sizes"};

json drop_warm_up(json result) {
  for (const char* key : kPerImageKeys) {
    if (result.contains(key) && !result[key].empty()) result[key].erase(0);
  }
  return result;
}

// One more round of a side: its per-image entries appended, the peak RSS the largest, the
// convolution peak the latest round's.
void append_round(json& all, const json& round) {
  if (all.is_null()) {
    all = round;
    return;
  }
  for (const char* key : kPerImageKeys) {
    if (!round.contains(key)) continue;
    for (const auto& v : round[key]) all[key].push_back(v);
  }
  all["peak_rss_mb"] = std::max(all["peak_rss_mb"].get<double>(), round["peak_rss_mb"].get<double>());
  if (round.contains("conv_peak_gflops")) all["conv_peak_gflops"] = round["conv_peak_gflops"];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"instseg vs torchvision inference speed"};
  std::string weights, json_out;
  std::vector<std::string> variants = {"v1", "v2"};
  std::vector<std::string> precisions = {"fp32", "bf16"};
  int images = 3;
  int rounds = 3;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int min_size = 800, max_size = 1333;
  bool worker = false;
  std::vector<std::string> worker_paths;
  app.add_option("--weights", weights, "Checkpoint (give its --variant); default: a seeded random-init one per variant");
  app.add_option("--variant", variants, "v1, v2 or v1,v2")->delimiter(',')->capture_default_str();
  app.add_option("--images", images, "Number of tiny_coco val images")->capture_default_str();
  app.add_option("--threads", threads, "Threads for both sides")->capture_default_str();
  app.add_option("--rounds", rounds, "Rounds in which every side runs once, in turn")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--precision", precisions,
                 "instseg's fused path: fp32, bf16 or fp32,bf16 (bf16 is skipped on CPUs without AVX512-BF16)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--min-size", min_size)->capture_default_str();
  app.add_option("--max-size", max_size)->capture_default_str();
  app.add_option("--json", json_out, "Also write every number measured to this file");
  app.add_flag("--worker", worker)->group("");  // internal: one instseg side in its own process
  app.add_option("--paths", worker_paths)->group("");
  CLI11_PARSE(app, argc, argv);
  if (worker) return run_worker(weights, precisions.at(0), threads, min_size, max_size, worker_paths);

  const std::string source = INSTSEG_SOURCE_DIR;
  if (!weights.empty() && variants.size() != 1) {
    std::cerr << "predict_bench: --weights needs the one --variant it is\n";
    return 2;
  }
  auto paths = instseg::collect_image_paths({source + "/datasets/tiny_coco/val2017"});
  paths.resize(std::min<size_t>(paths.size(), static_cast<size_t>(images)));
  std::vector<std::array<int64_t, 2>> sizes;
  for (const auto& p : paths) {
    const auto image = instseg::data::read_image_rgb(p);
    sizes.push_back({image.size(1), image.size(2)});
  }
  // The first image again, first: the warm-up run, dropped from the results.
  std::string image_args = paths[0];
  for (const auto& p : paths) image_args += " " + p;
  const std::string self = fs::canonical("/proc/self/exe").string();
  const bool native_bf16 = instseg::ops::cpu_has_native_bf16();
  const std::string cpu = instseg::cpu_model();

  json all;
  all["cpu"] = cpu;
  all["threads"] = threads;
  all["images"] = paths.size();
  all["min_size"] = min_size;
  all["max_size"] = max_size;
  all["rounds"] = rounds;
  std::printf("CPU: %s; threads %d; %zu tiny_coco val images at %d/%d px, one warm-up image first; %d rounds\n",
              cpu.c_str(), threads, paths.size(), min_size, max_size, rounds);
  for (const std::string& variant : variants) {
    std::string checkpoint = weights;
    if (checkpoint.empty()) {
      checkpoint = instseg::bench::bench_checkpoint(source, variant);
    }
    instseg::ModelOverrides describe;
    describe.fused = false;
    describe.min_size = min_size;
    describe.max_size = max_size;
    const instseg::MaskRcnnOptions options = instseg::load_mask_rcnn(checkpoint, describe)->options();

    std::vector<Side> sides;
    for (const std::string& precision : precisions) {
      if (precision == "bf16" && !native_bf16) {
        std::printf("(instseg bf16 skipped: this CPU has no AVX512-BF16, oneDNN would emulate it)\n");
        continue;
      }
      sides.push_back({"instseg " + precision, json(), 0.0, precision});
    }
    const size_t instseg_sides = sides.size();
    sides.push_back({"torchvision installed", json(), 0.0, ""});
    sides.push_back({"torchvision same malloc", json(), 0.0, ""});
    const std::string python = "/usr/bin/python3 " + source + "/bench/torchvision_predict.py " + checkpoint + " " +
                               std::to_string(threads) + " " + std::to_string(min_size) + " " +
                               std::to_string(max_size) + " " + image_args;
    // MALLOC_TRIM_THRESHOLD_ = INT_MAX: what keep_freed_memory_in_process sets with mallopt.
    const std::string policy = "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=" + std::to_string(INT_MAX) + " ";
    std::vector<std::vector<double>> round_ratios(instseg_sides);
    std::printf("\n%s: each round's median s/image per side\n", variant.c_str());
    for (int round = 0; round < rounds; ++round) {
      std::vector<json> results;
      for (size_t i = 0; i < instseg_sides; ++i) {
        const std::string command = "'" + self + "' --worker --weights '" + checkpoint + "' --precision " +
                                    sides[i].precision +
                                    " --threads " + std::to_string(threads) + " --min-size " +
                                    std::to_string(min_size) + " --max-size " + std::to_string(max_size) +
                                    " --paths " + image_args;
        results.push_back(drop_warm_up(json::parse(run_capture(command))));
      }
      results.push_back(drop_warm_up(json::parse(run_capture(python))));
      results.push_back(drop_warm_up(json::parse(run_capture(policy + python))));
      const double same = median(results.back()["seconds"].get<std::vector<double>>());
      std::printf("  round %d:", round + 1);
      for (size_t i = 0; i < sides.size(); ++i) {
        const double s = median(results[i]["seconds"].get<std::vector<double>>());
        std::printf(" %s %.3f s", sides[i].name.c_str(), s);
        if (i < instseg_sides) round_ratios[i].push_back(same / s);
        append_round(sides[i].result, results[i]);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    for (size_t i = 0; i < instseg_sides; ++i) sides[i].conv_peak = sides[i].result["conv_peak_gflops"].get<double>();
    const double fp32_peak = instseg_sides == 0 ? 0.0 : sides.front().conv_peak;
    for (size_t i = instseg_sides; i < sides.size(); ++i) sides[i].conv_peak = fp32_peak;
    std::vector<std::array<int64_t, 2>> round_sizes;
    for (int round = 0; round < rounds; ++round) round_sizes.insert(round_sizes.end(), sizes.begin(), sizes.end());

    const double reference = median(sides.back().result["seconds"].get<std::vector<double>>());
    const double installed = median(sides[sides.size() - 2].result["seconds"].get<std::vector<double>>());
    std::printf("\n%s (%s, %d classes): median s/image end to end, ratio = torchvision's / this side's\n",
                variant.c_str(), checkpoint.c_str(), options.num_classes);
    std::printf("  %-24s %9s %14s %14s %12s %10s\n", "side", "s/image", "vs tv same", "vs tv inst.", "peak RSS MB",
                "conv peak");
    json variant_json;
    for (const Side& side : sides) {
      const double s = median(side.result["seconds"].get<std::vector<double>>());
      std::printf("  %-24s %9.3f %13.2fx %13.2fx %12.0f %10.1f\n", side.name.c_str(), s, reference / s, installed / s,
                  side.result["peak_rss_mb"].get<double>(), side.conv_peak);
      json j = side.result;
      j["median_seconds"] = s;
      j["conv_peak_gflops"] = side.conv_peak;
      variant_json[side.name] = j;
    }
    for (size_t i = 0; i < instseg_sides; ++i) {
      std::printf("  %s, torchvision same malloc / this side per round:", sides[i].name.c_str());
      for (const double r : round_ratios[i]) std::printf(" %.2fx", r);
      std::printf(" (median %.2fx)\n", median(round_ratios[i]));
      variant_json[sides[i].name]["round_ratios"] = round_ratios[i];
    }
    std::printf("  per stage: mean ms/image | GFLOP/s | %% of that precision's measured conv peak\n");
    std::printf("  %-16s %8s", "stage", "GFLOP");
    for (const Side& side : sides) std::printf(" | %-24s", side.name.c_str());
    std::printf("\n");
    std::vector<instseg::StageFlops> flops;
    for (const Side& side : sides) flops.push_back(side_flops(options, round_sizes, side.result, side.fused()));
    for (const char* stage : kStages) {
      std::printf("  %-16s %8.1f", stage, flops.front().of(stage) / 1e9);
      for (size_t i = 0; i < sides.size(); ++i) {
        const double ms = 1e3 * mean_stage(sides[i].result["stages"], stage);
        const double f = flops[i].of(stage);
        if (f > 0 && ms > 0) {
          const double rate = f / 1e9 / (ms / 1e3);
          std::printf(" | %8.0f %6.0f %6.1f%% ", ms, rate, sides[i].conv_peak > 0 ? 100 * rate / sides[i].conv_peak : 0.0);
        } else {
          std::printf(" | %8.0f %15s", ms, "");
        }
        variant_json[sides[i].name]["stage_ms"][stage] = ms;
        variant_json[sides[i].name]["stage_gflop"][stage] = f / 1e9;
      }
      std::printf("\n");
    }
    all["variants"][variant] = variant_json;
  }
  if (!json_out.empty()) std::ofstream(json_out) << all.dump(2) << "\n";
  return 0;
}
