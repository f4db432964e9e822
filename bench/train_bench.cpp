// Training speed: instseg's Mask R-CNN training step (losses, backward, SGD or AdamW) against torchvision's
// on the same initial weights, batches and thread count, measured in one run. Prints the median
// seconds per iteration of both and the ratio. --profile writes a Chrome trace of our side.
//
// usage: train_bench [--depth 18] [--norm batch] [--size 256] [--batch 4] [--iterations 6]
//                    [--threads T] [--fpn-channels 256] [--box-features 1024] [--mask-channels 256]
//                    [--box-batch 128] [--optimizer sgd] [--weights W] [--profile trace.json]
//                    [--blas-threads 1] [--precision fp32|bf16] [--no-torchvision]
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "instseg/common/blas_threads.h"
#include "instseg/common/process_memory.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/data/loader.h"
#include "instseg/data/synthetic.h"
#include "bench_support.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/optimizer.h"
#include "instseg/ops/mixed_precision.h"

namespace fs = std::filesystem;

namespace {

using instseg::bench::median;
using instseg::bench::run_capture;


// Batches as {"images": [[3,H,W]...], "boxes": [...], "labels": [...], "masks": [...]} per batch,
// for the torchvision side.
void save_batches(const std::string& path, const std::vector<instseg::data::Batch>& batches) {
  c10::impl::GenericList all(c10::AnyType::get());
  for (const auto& batch : batches) {
    c10::impl::GenericDict entry(c10::StringType::get(), c10::AnyType::get());
    c10::List<at::Tensor> images, boxes, labels, masks;
    for (size_t i = 0; i < batch.images.size(); ++i) {
      images.push_back(batch.images[i]);
      boxes.push_back(batch.targets[i].boxes);
      labels.push_back(batch.targets[i].labels);
      masks.push_back(batch.targets[i].masks);
    }
    entry.insert("images", images);
    entry.insert("boxes", boxes);
    entry.insert("labels", labels);
    entry.insert("masks", masks);
    all.push_back(entry);
  }
  instseg::save_archive(path, all);
}

}  // namespace

int main(int argc, char** argv) {
  instseg::keep_freed_memory_in_process();  // as the instseg program does
  CLI::App app{"instseg vs torchvision training speed"};
  instseg::ModelConfig model_config;
  auto& o = model_config.options;  // the model, as a config's model.* keys describe it
  o.backbone.depth = 18;
  std::string norm = "batch";  // torchvision_train.py's word for it
  o.backbone.trainable_layers = 5;
  o.rpn.post_nms_top_n_train = 300;
  o.roi_heads.batch_size_per_image = 128;
  int size = 256, batch_size = 4, iterations = 6;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string profile, optimizer_kind = "sgd";
  bool skip_torchvision = false;
  app.add_option("--depth", o.backbone.depth, "ResNet depth")->capture_default_str();
  app.add_option("--norm", norm, "Backbone norm: batch, group, frozen")
      ->check(CLI::IsMember({"batch", "group", "frozen"}))
      ->capture_default_str();
  app.add_option("--fpn-channels", o.backbone.out_channels, "FPN width")->capture_default_str();
  app.add_option("--box-features", o.roi_heads.representation_size, "Box head width")->capture_default_str();
  app.add_option("--mask-channels", o.roi_heads.mask_channels, "Mask head width")->capture_default_str();
  app.add_option("--box-batch", o.roi_heads.batch_size_per_image, "RoIs sampled per image")->capture_default_str();
  app.add_option("--size", size, "Synthetic image side (also min/max size)")->capture_default_str();
  app.add_option("--batch", batch_size, "Images per iteration")->capture_default_str();
  app.add_option("--iterations", iterations, "Timed iterations after one warm-up")->capture_default_str();
  app.add_option("--threads", threads, "Threads for both sides")->capture_default_str();
  int blas_threads = 1;  // as the instseg program sets it
  app.add_option("--blas-threads", blas_threads, "OpenBLAS threads on the instseg side")->capture_default_str();
  app.add_option("--optimizer", optimizer_kind, "sgd (momentum 0.9, decay 1e-4) or adamw (torch defaults)")
      ->check(CLI::IsMember({"sgd", "adamw"}))
      ->capture_default_str();
  std::string precision = "fp32";
  app.add_option("--precision", precision,
                 "bf16: instseg's forward passes under CPU autocast (torchvision's side stays fp32: torchvision "
                 "0.14's training step fails under CPU bfloat16 autocast, its nms has no bfloat16 kernel)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  app.add_option("--profile", profile, "Write a Chrome trace of two instseg iterations here");
  app.add_flag("--no-torchvision", skip_torchvision, "Time instseg only");
  app.add_option("--weights", model_config.weights,
                 "Start from this checkpoint (e.g. a trained demo's model_last.pth: a trained RPN finds more "
                 "objects, so the mask head gets more RoIs than at initialisation)");
  CLI11_PARSE(app, argc, argv);
  o.transform.min_size = {size};
  o.transform.max_size = size;
  o.backbone.norm = norm == "batch"   ? instseg::NormKind::kBatchNorm
                    : norm == "group" ? instseg::NormKind::kGroupNorm
                                      : instseg::NormKind::kFrozenBatchNorm;

  torch::set_num_threads(threads);
  instseg::set_openblas_threads(blas_threads);
  torch::manual_seed(0);
  instseg::data::SyntheticOptions data_options;
  data_options.height = data_options.width = size;
  data_options.num_images = 1000;
  auto dataset = std::make_shared<instseg::data::SyntheticDataset>(data_options);
  instseg::data::LoaderOptions loader_options;
  loader_options.batch_size = batch_size;
  loader_options.hflip_prob = 0.0;
  loader_options.prefetch_batches = 0;  // batches made here, timed, then reused by both sides
  instseg::data::DataLoader loader(dataset, loader_options);
  std::vector<instseg::data::Batch> batches;
  const auto data_start = std::chrono::steady_clock::now();
  for (int i = 0; i <= iterations; ++i) batches.push_back(loader.next());
  const double data_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - data_start).count() / (iterations + 1);

  auto model = instseg::build_mask_rcnn_for_training(model_config, dataset->categories().num_classes());
  const fs::path dir = fs::temp_directory_path() / "instseg_train_bench";
  fs::create_directories(dir);
  const std::string weights = (dir / "initial.pth").string(), data_file = (dir / "batches.pth").string();
  instseg::save_state_dict(weights, instseg::module_state_dict(*model));
  save_batches(data_file, batches);

  instseg::OptimizerOptions optimizer_options;
  optimizer_options.kind =
      optimizer_kind == "adamw" ? instseg::OptimizerOptions::Kind::kAdamW : instseg::OptimizerOptions::Kind::kSgd;
  optimizer_options.weight_decay = optimizer_kind == "adamw" ? 1e-2 : 1e-4;  // each optimizer's usual value
  instseg::Optimizer optimizer(*model, optimizer_options);
  model->train();
  auto step = [&](const instseg::data::Batch& batch) {
    torch::Tensor total = torch::zeros({});
    {
      instseg::ops::Bf16AutocastScope autocast(precision == "bf16");
      for (const auto& [name, value] : model->losses(batch.images, batch.targets)) total = total + value;
    }
    optimizer.zero_grad();
    total.backward();
    optimizer.step(optimizer_kind == "adamw" ? 1e-3 : 0.01);
    return total.item<double>();
  };
  step(batches[0]);  // warm-up: first-call allocations, oneDNN primitive creation
  std::vector<double> ours;
  double last_loss = 0;
  for (int i = 1; i <= iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    last_loss = step(batches[static_cast<size_t>(i)]);
    ours.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (!profile.empty()) {
    torch::autograd::profiler::RecordProfile guard(profile);
    for (int i = 1; i <= std::min(2, iterations); ++i) step(batches[static_cast<size_t>(i)]);
  }

  std::printf("model: ResNet-%d-FPN (%s norm), %lld classes, %dx%d synthetic images, batch %d, threads %d, %s\n",
              o.backbone.depth, norm.c_str(), static_cast<long long>(dataset->categories().num_classes()), size, size,
              batch_size, threads, precision.c_str());
  const double a = median(ours);
  std::printf("data        %.3f s to generate a batch (the trainer's loader does it on a background thread)\n",
              data_seconds);
  std::printf("instseg     median %.3f s/iteration  (%.2f images/s, last loss %.3f)\n", a, batch_size / a, last_loss);
  if (skip_torchvision) return 0;
  const std::string source = INSTSEG_SOURCE_DIR;
  const std::string command = "/usr/bin/python3 " + source + "/bench/torchvision_train.py " + weights + " " +
                              data_file + " " + std::to_string(threads) + " " + std::to_string(o.backbone.depth) +
                              " " + norm + " " + std::to_string(size) + " " +
                              std::to_string(o.rpn.post_nms_top_n_train) + " " +
                              std::to_string(o.roi_heads.batch_size_per_image) + " " + optimizer_kind;
  auto theirs = nlohmann::json::parse(run_capture(command))["seconds"].get<std::vector<double>>();
  theirs.erase(theirs.begin());  // warm-up
  const double b = median(theirs);
  std::printf("torchvision median %.3f s/iteration  (%.2f images/s, fp32)\n", b, batch_size / b);
  std::printf("ratio torchvision/instseg: %.2fx\n", b / a);
  return 0;
}
