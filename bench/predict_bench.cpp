// Inference speed: instseg's Mask R-CNN against torchvision's on the same checkpoint, images and
// thread count, measured in one run. Prints median model seconds per image for both and the ratio.
//
// usage: predict_bench [--weights W.pth] [--variant v1|v2] [--images N] [--threads T] [--blas-threads 1]
//   Without --weights a seeded random-init checkpoint is made with bench/make_checkpoint.py.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "instseg/common/blas_threads.h"
#include "instseg/common/process_memory.h"
#include "instseg/common/stage_profile.h"
#include "instseg/data/image_io.h"
#include "bench_support.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/predictor.h"

namespace fs = std::filesystem;

using instseg::bench::median;
using instseg::bench::run_capture;

int main(int argc, char** argv) {
  instseg::keep_freed_memory_in_process();  // as the instseg program does
  CLI::App app{"instseg vs torchvision inference speed"};
  std::string weights, variant = "v1";
  int images = 5;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int min_size = 800, max_size = 1333;
  app.add_option("--weights", weights, "Checkpoint; default: a seeded random-init one");
  app.add_option("--variant", variant, "v1 or v2 (for the generated checkpoint)");
  app.add_option("--images", images, "Number of tiny_coco val images")->capture_default_str();
  app.add_option("--threads", threads, "Threads for both sides")->capture_default_str();
  int blas_threads = 1;  // as the instseg program sets it
  app.add_option("--blas-threads", blas_threads, "OpenBLAS threads on the instseg side")->capture_default_str();
  std::string precision = "fp32";
  app.add_option("--precision", precision, "instseg's fused path: fp32 or bf16; 'modules' for the unfused module code");
  CLI11_PARSE(app, argc, argv);

  const std::string source = INSTSEG_SOURCE_DIR;
  if (weights.empty()) {
    weights = (fs::temp_directory_path() / ("instseg_bench_" + variant + ".pth")).string();
    if (!fs::exists(weights)) run_capture("/usr/bin/python3 " + source + "/bench/make_checkpoint.py " + weights + " " + variant);
  }
  auto paths = instseg::collect_image_paths({source + "/datasets/tiny_coco/val2017"});
  paths.resize(std::min<size_t>(paths.size(), static_cast<size_t>(images)));

  torch::set_num_threads(threads);
  instseg::set_openblas_threads(blas_threads);
  instseg::ModelOverrides overrides;
  overrides.min_size = min_size;
  overrides.max_size = max_size;
  overrides.fused = precision != "modules";
  if (overrides.fused) overrides.precision = instseg::ops::inference_precision_named(precision, "--precision");
  auto model = instseg::load_mask_rcnn(weights, overrides);
  torch::InferenceMode guard;
  std::vector<torch::Tensor> decoded;
  for (const auto& p : paths) decoded.push_back(instseg::data::read_image_rgb(p));
  model->predict({decoded[0]});  // warm-up: first-call allocations, oneDNN primitive creation
  std::vector<double> ours;
  size_t detections = 0;
  instseg::StageProfile profile;
  for (const auto& image : decoded) {
    const auto start = std::chrono::steady_clock::now();
    detections += model->predict({image}, &profile)[0].scores.size(0);
    ours.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }

  std::string command = "/usr/bin/python3 " + source + "/bench/torchvision_predict.py " + weights + " " +
                        std::to_string(threads) + " " + std::to_string(min_size) + " " + std::to_string(max_size) +
                        " " + paths[0];  // the first image again, as warm-up
  for (const auto& p : paths) command += " " + p;
  auto theirs = nlohmann::json::parse(run_capture(command))["seconds"].get<std::vector<double>>();
  theirs.erase(theirs.begin());

  const double a = median(ours), b = median(theirs);
  std::printf("images: %zu (tiny_coco val, min_size %d, max_size %d), threads: %d, weights: %s\n",
              paths.size(), min_size, max_size, threads, weights.c_str());
  std::printf("instseg     median %.3f s/image  (%zu detections in all)\n", a, detections);
  std::printf("torchvision median %.3f s/image\n", b);
  std::printf("ratio torchvision/instseg: %.2fx\n", b / a);
  std::printf("instseg stages (mean s/image):");
  for (const auto& [stage, seconds] : profile.seconds) std::printf(" %s %.3f", stage.c_str(), seconds / decoded.size());
  std::printf("\n");
  return 0;
}
