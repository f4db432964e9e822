// Training speed: instseg's Mask R-CNN training step (losses, backward, SGD or AdamW) against torchvision's
// on the same initial weights, batches and thread count, measured in one run. Prints the CPU (model,
// family/model numbers, the flags that decide the fast kernels), the step settings our side ran
// (precision and memory layout, fixed or measured at start-up as the trainer does), and per phase
// (data, forward, backward, optimizer) the median seconds of the timed iterations for both sides,
// their per-iteration total and the ratio torchvision/instseg. --json writes the same, with every
// iteration's times. --profile writes a Chrome trace of our side.
//
// usage: train_bench [--depth 18] [--norm batch] [--size 256] [--batch 4] [--iterations 6]
//                    [--threads T] [--fpn-channels 256] [--box-features 1024] [--mask-channels 256]
//                    [--box-batch 128] [--rpn-post-nms 300] [--trainable-layers 5] [--optimizer sgd]
//                    [--weights W] [--profile trace.json] [--json out.json] [--blas-threads 1]
//                    [--precision fp32|bf16|auto] [--memory-format contiguous|channels_last|auto]
//                    [--lr LR] [--no-torchvision]
// torchvision's maskrcnn_resnet50_fpn fine-tuning step (issue 16's second row; lr 0.0025 is its
// reference recipe's 0.02 per 16 images, for 2):
//   train_bench --depth 50 --norm frozen --trainable-layers 3 --size 800 --batch 2 --rpn-post-nms 2000
//               --box-batch 512 --lr 0.0025 --iterations 3
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "instseg/common/blas_threads.h"
#include "instseg/common/process_memory.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/data/loader.h"
#include "instseg/data/synthetic.h"
#include "bench_support.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/step_settings.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/optimizer.h"
#include "instseg/ops/mixed_precision.h"

namespace fs = std::filesystem;

namespace {

using instseg::bench::median;
using instseg::bench::run_capture;
using Clock = std::chrono::steady_clock;

// A double as text that reads back to the same value (std::to_string keeps 6 decimals).
std::string exact(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The phases of one side's iterations, in the order printed; each a list of seconds per timed
// iteration.
const std::vector<std::string> kPhases = {"data", "forward", "backward", "optimizer"};
using PhaseTimes = std::map<std::string, std::vector<double>>;

// Per iteration, forward + backward + optimizer: the training step that the trainer's loader
// overlaps data with (the loader makes batches on a background thread).
std::vector<double> step_totals(const PhaseTimes& phases) {
  std::vector<double> out(phases.at("forward").size(), 0.0);
  for (const char* phase : {"forward", "backward", "optimizer"}) {
    for (size_t i = 0; i < out.size(); ++i) out[i] += phases.at(phase)[i];
  }
  return out;
}

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

// Frozen batch norm built from scratch has statistics 0 / 1 and scale 1: a random ResNet then has no
// normalisation at all and its activations grow stage after stage (ResNet-50 at 256 px: losses
// ~1e7 from the first step, whose SGD update sends them to infinity), which no fine-tuning run
// sees. So, as a pretrained backbone's would, the frozen statistics are measured: the same model
// with batch norm runs `batch` forward in training mode with momentum 1, which leaves each
// layer's running statistics equal to that batch's (each layer normalised by the ones before).
// Writes that model's state dict without batch norm's step counters, a checkpoint the frozen
// model loads whole.
void write_measured_frozen_statistics(instseg::ModelConfig config, int64_t num_classes,
                                      const instseg::data::Batch& batch, const std::string& path) {
  config.options.backbone.norm = instseg::NormKind::kBatchNorm;
  auto model = instseg::build_mask_rcnn_for_training(config, num_classes);
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (auto* norm = dynamic_cast<torch::nn::BatchNorm2dImpl*>(module.get())) norm->options.momentum(1.0);
  }
  model->train();
  {
    torch::NoGradGuard no_grad;
    model->losses(batch.images, batch.targets);
  }
  instseg::StateDict kept;
  const std::string counter = "num_batches_tracked";
  for (auto& [name, value] : instseg::module_state_dict(*model)) {
    const bool is_counter =
        name.size() >= counter.size() && name.compare(name.size() - counter.size(), counter.size(), counter) == 0;
    if (!is_counter) kept.emplace_back(name, value);
  }
  instseg::save_state_dict(path, kept);
}

int run(int argc, char** argv) {
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
  std::string profile, json_file, optimizer_kind = "sgd";
  bool skip_torchvision = false;
  app.add_option("--depth", o.backbone.depth, "ResNet depth")->capture_default_str();
  app.add_option("--norm", norm, "Backbone norm: batch, group (instseg only), frozen")
      ->check(CLI::IsMember({"batch", "group", "frozen"}))
      ->capture_default_str();
  app.add_option("--trainable-layers", o.backbone.trainable_layers,
                 "ResNet stages trained, counted from layer4 (torchvision's trainable_backbone_layers; its "
                 "fine-tuning default is 3, 5 trains conv1 and bn1 too)")
      ->check(CLI::Range(0, 5))
      ->capture_default_str();
  app.add_option("--fpn-channels", o.backbone.out_channels, "FPN width")->capture_default_str();
  app.add_option("--returned-layers", o.backbone.returned_layers,
                 "ResNet stages feeding the FPN (torchvision's returned_layers; anchors 32 px up, one size per map)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--box-features", o.roi_heads.representation_size, "Box head width")->capture_default_str();
  app.add_option("--mask-channels", o.roi_heads.mask_channels, "Mask head width")->capture_default_str();
  app.add_option("--box-batch", o.roi_heads.batch_size_per_image, "RoIs sampled per image (torchvision: 512)")
      ->capture_default_str();
  app.add_option("--rpn-post-nms", o.rpn.post_nms_top_n_train,
                 "RPN proposals kept per image after NMS in training (torchvision: 2000)")
      ->capture_default_str();
  app.add_option("--size", size, "Synthetic image side (also min/max size)")->capture_default_str();
  app.add_option("--batch", batch_size, "Images per iteration")->capture_default_str();
  app.add_option("--iterations", iterations, "Timed iterations after one warm-up")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--threads", threads, "Threads for both sides")->capture_default_str();
  int blas_threads = 1;  // as the instseg program sets it
  app.add_option("--blas-threads", blas_threads, "OpenBLAS threads on the instseg side")->capture_default_str();
  app.add_option("--optimizer", optimizer_kind, "sgd (momentum 0.9, decay 1e-4) or adamw (torch defaults)")
      ->check(CLI::IsMember({"sgd", "adamw"}))
      ->capture_default_str();
  instseg::OptimConfig step_config;  // only .precision and .memory_format matter here
  app.add_option("--precision", step_config.precision,
                 "instseg's forward pass: fp32, bf16 (CPU autocast) or auto (timed at start-up as the trainer's "
                 "optim.precision auto). torchvision's side stays fp32: torchvision 0.14's training step fails "
                 "under CPU bfloat16 autocast, its nms has no bfloat16 kernel")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
      ->capture_default_str();
  app.add_option("--memory-format", step_config.memory_format,
                 "instseg's activations in training: contiguous (NCHW), channels_last (NHWC) or auto (timed at "
                 "start-up with the precision's candidates, as the trainer's optim.memory_format auto)")
      ->check(CLI::IsMember({"contiguous", "channels_last", "auto"}))
      ->capture_default_str();
  double lr = 0.0;
  app.add_option("--lr", lr, "Learning rate of both sides (default: 0.01 for sgd, 1e-3 for adamw)");
  app.add_option("--profile", profile, "Write a Chrome trace of two instseg iterations here");
  app.add_option("--json", json_file, "Also write the CPU, settings and every iteration's phase times here");
  app.add_flag("--no-torchvision", skip_torchvision, "Time instseg only");
  app.add_option("--weights", model_config.weights,
                 "Start from this checkpoint (e.g. a trained demo's model_last.pth: a trained RPN finds more "
                 "objects, so the mask head gets more RoIs than at initialisation)");
  CLI11_PARSE(app, argc, argv);
  if (lr <= 0.0) lr = optimizer_kind == "adamw" ? 1e-3 : 0.01;
  if (norm == "group" && !skip_torchvision) {
    std::fprintf(stderr, "--norm group: torchvision's side has no group-norm ResNet here; add --no-torchvision\n");
    return 2;
  }
  o.transform.min_size = {size};
  o.transform.max_size = size;
  std::string returned_layers;  // torchvision_train.py's form, "1,2,3"
  o.anchors.sizes.clear();
  o.anchors.aspect_ratios.clear();
  for (size_t k = 0; k <= o.backbone.returned_layers.size(); ++k) {
    o.anchors.sizes.push_back({static_cast<double>(32 << k)});
    o.anchors.aspect_ratios.push_back({0.5, 1.0, 2.0});
    if (k < o.backbone.returned_layers.size()) {
      returned_layers += (k ? "," : "") + std::to_string(o.backbone.returned_layers[k]);
    }
  }
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
  loader_options.prefetch_batches = 0;  // each batch made in next(), timed, then reused by both sides
  instseg::data::DataLoader loader(dataset, loader_options);
  std::vector<instseg::data::Batch> batches;
  std::vector<double> data_seconds;  // batches[i] took data_seconds[i] to make
  for (int i = 0; i <= iterations; ++i) {
    const auto start = Clock::now();
    batches.push_back(loader.next());
    data_seconds.push_back(seconds_since(start));
  }

  // One folder per run: two benchmarks running at once must not read each other's weights.
  const fs::path dir = fs::temp_directory_path() / ("instseg_train_bench_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  struct RemoveOnExit {
    fs::path path;
    ~RemoveOnExit() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } remove_on_exit{dir};
  const std::string weights = (dir / "initial.pth").string(), data_file = (dir / "batches.pth").string();
  const auto cpu = instseg::bench::cpu_info();
  const int64_t num_classes = dataset->categories().num_classes();

  const bool measure_frozen_statistics = norm == "frozen" && model_config.weights.empty();
  if (measure_frozen_statistics) {
    const std::string measured = (dir / "frozen_statistics.pth").string();
    write_measured_frozen_statistics(model_config, num_classes, batches[0], measured);
    model_config.weights = measured;
    torch::manual_seed(0);
  }

  PhaseTimes ours;
  instseg::StepChoice choice;
  std::vector<double> our_losses;  // the warm-up's, then each timed iteration's
  int64_t trainable_parameters = 0, trainable_tensors = 0;
  {
    auto model = instseg::build_mask_rcnn_for_training(model_config, num_classes);
    for (const auto& p : model->parameters()) {
      if (!p.requires_grad()) continue;
      trainable_parameters += p.numel();
      ++trainable_tensors;
    }
    instseg::save_state_dict(weights, instseg::module_state_dict(*model));
    save_batches(data_file, batches);

    instseg::OptimizerOptions optimizer_options;
    optimizer_options.kind =
        optimizer_kind == "adamw" ? instseg::OptimizerOptions::Kind::kAdamW : instseg::OptimizerOptions::Kind::kSgd;
    optimizer_options.weight_decay = optimizer_kind == "adamw" ? 1e-2 : 1e-4;  // each optimizer's usual value
    instseg::Optimizer optimizer(*model, optimizer_options);
    model->train();
    // As the trainer: fixed words give themselves, "auto" times the open candidates on the first
    // batch (weights, statistics and RNG left as they were) and applies the fastest layout.
    choice = instseg::measure_step_settings(*model, [&] { return batches[0]; }, step_config, nullptr);
    const bool bf16 = choice.chosen.bf16;
    // One iteration, its phases' seconds appended to `times` (when given).
    auto step = [&](const instseg::data::Batch& batch, PhaseTimes* times) {
      auto start = Clock::now();
      torch::Tensor total = torch::zeros({});
      {
        instseg::ops::Bf16AutocastScope autocast(bf16);
        for (const auto& [name, value] : model->losses(batch.images, batch.targets)) total = total + value;
      }
      const double forward = seconds_since(start);
      start = Clock::now();
      optimizer.zero_grad();
      double optimizer_seconds = seconds_since(start);
      start = Clock::now();
      total.backward();
      const double backward = seconds_since(start);
      start = Clock::now();
      optimizer.step(lr);
      optimizer_seconds += seconds_since(start);
      if (times != nullptr) {
        (*times)["forward"].push_back(forward);
        (*times)["backward"].push_back(backward);
        (*times)["optimizer"].push_back(optimizer_seconds);
      }
      return total.item<double>();
    };
    our_losses.push_back(step(batches[0], nullptr));  // warm-up: first-call allocations, oneDNN primitives
    for (int i = 1; i <= iterations; ++i) {
      our_losses.push_back(step(batches[static_cast<size_t>(i)], &ours));
      ours["data"].push_back(data_seconds[static_cast<size_t>(i)]);
    }
    if (!profile.empty()) {
      torch::autograd::profiler::RecordProfile guard(profile);
      for (int i = 1; i <= std::min(2, iterations); ++i) step(batches[static_cast<size_t>(i)], nullptr);
    }
  }
#ifdef __GLIBC__
  // Our side is done: hand its kept memory back before torchvision's side (another process) needs
  // its own, so an 800 px run does not hold two training steps' peaks at once.
  malloc_trim(0);
#endif

  std::printf("cpu: %s; threads %d\n", cpu.describe().c_str(), threads);
  std::printf("model: ResNet-%d-FPN (%s norm, trainable layers %d), FPN %lld, box head %lld, mask head %lld, "
              "%lld classes; rpn post-NMS train %lld, %lld RoIs per image\n",
              o.backbone.depth, norm.c_str(), o.backbone.trainable_layers,
              static_cast<long long>(o.backbone.out_channels), static_cast<long long>(o.roi_heads.representation_size),
              static_cast<long long>(o.roi_heads.mask_channels), static_cast<long long>(num_classes),
              static_cast<long long>(o.rpn.post_nms_top_n_train),
              static_cast<long long>(o.roi_heads.batch_size_per_image));
  std::printf("data: %dx%d synthetic images, batch %d, %s, %d timed iterations after one warm-up\n", size, size,
              batch_size, optimizer_kind.c_str(), iterations);
  if (measure_frozen_statistics) {
    std::printf("frozen batch norm: statistics of the first batch (no --weights; a random ResNet with 0/1 "
                "statistics diverges)\n");
  }
  std::printf("instseg kernels: %s; --precision %s --memory-format %s\n", choice.summary().c_str(),
              step_config.precision.c_str(), step_config.memory_format.c_str());
  std::printf("instseg trainable: %lld parameters in %lld tensors\n", static_cast<long long>(trainable_parameters),
              static_cast<long long>(trainable_tensors));

  nlohmann::json report;
  report["cpu"] = {{"model_name", cpu.model},
                   {"family", cpu.family},
                   {"model", cpu.model_number},
                   {"stepping", cpu.stepping},
                   {"flags", cpu.flags},
                   {"threads", threads}};
  report["config"] = {{"depth", o.backbone.depth},
                      {"norm", norm},
                      {"trainable_layers", o.backbone.trainable_layers},
                      {"fpn_channels", o.backbone.out_channels},
                      {"box_features", o.roi_heads.representation_size},
                      {"mask_channels", o.roi_heads.mask_channels},
                      {"rpn_post_nms_train", o.rpn.post_nms_top_n_train},
                      {"box_batch", o.roi_heads.batch_size_per_image},
                      {"num_classes", num_classes},
                      {"size", size},
                      {"batch", batch_size},
                      {"iterations", iterations},
                      {"optimizer", optimizer_kind},
                      {"lr", lr},
                      {"blas_threads", blas_threads},
                      {"weights", measure_frozen_statistics ? std::string() : model_config.weights},
                      {"frozen_statistics_measured", measure_frozen_statistics}};
  nlohmann::json trials = nlohmann::json::array();
  for (const auto& trial : choice.trials) trials.push_back({{"settings", trial.settings.name()}, {"seconds", trial.seconds}});
  report["instseg"] = {{"precision_flag", step_config.precision},
                       {"memory_format_flag", step_config.memory_format},
                       {"settings", choice.chosen.name()},
                       {"summary", choice.summary()},
                       {"trials", trials},
                       {"phases", ours},
                       {"step", step_totals(ours)},
                       {"losses", our_losses},
                       {"trainable_parameters", trainable_parameters}};

  PhaseTimes theirs;
  if (!skip_torchvision) {
    const std::string source = INSTSEG_SOURCE_DIR;
    const std::string command =
        "/usr/bin/python3 " + source + "/bench/torchvision_train.py " + weights + " " + data_file +
        " --threads " + std::to_string(threads) + " --depth " + std::to_string(o.backbone.depth) + " --norm " + norm +
        " --size " + std::to_string(size) + " --rpn-post-nms " + std::to_string(o.rpn.post_nms_top_n_train) +
        " --box-batch " + std::to_string(o.roi_heads.batch_size_per_image) + " --optimizer " + optimizer_kind + " --lr " + exact(lr) +
        " --trainable-layers " + std::to_string(o.backbone.trainable_layers) + " --returned-layers " + returned_layers;
    const auto answer = nlohmann::json::parse(run_capture(command));
    theirs = answer["phases"].get<PhaseTimes>();
    for (auto& [phase, values] : theirs) values.erase(values.begin());  // warm-up
    const auto their_trainable = answer["trainable_parameters"].get<int64_t>();
    std::printf("torchvision: %s; trainable %lld parameters in %lld tensors; fp32 contiguous\n",
                answer["model"].get<std::string>().c_str(), static_cast<long long>(their_trainable),
                static_cast<long long>(answer["parameter_tensors"].get<int64_t>()));
    if (their_trainable != trainable_parameters) {
      // Both load the same weights strictly, so only what trains can differ: then the two steps
      // are not the same work and the ratio means nothing.
      std::fprintf(stderr, "error: the two sides train different parameters (%lld vs %lld)\n",
                   static_cast<long long>(trainable_parameters), static_cast<long long>(their_trainable));
      return 1;
    }
    report["torchvision"] = {{"settings", "fp32 contiguous"},
                             {"data_is", "unpacking the pre-made in-memory batch into torchvision's lists and dicts"},
                             {"model", answer["model"]},
                             {"phases", theirs},
                             {"step", step_totals(theirs)},
                             {"losses", answer["losses"]},
                             {"trainable_parameters", their_trainable}};
  }

  // The table: medians per phase and of the per-iteration step totals (not the sum of medians).
  std::printf("\n%-10s %12s %16s %14s\n", "phase", "instseg s", "torchvision s", "tv/instseg");
  nlohmann::json medians;
  auto row = [&](const std::string& name, const std::vector<double>& a, const std::vector<double>* b) {
    const double ma = median(a);
    medians["instseg"][name] = ma;
    if (b == nullptr) {
      std::printf("%-10s %12.4f %16s %14s\n", name.c_str(), ma, "-", "-");
      return;
    }
    const double mb = median(*b);
    medians["torchvision"][name] = mb;
    if (name == "data") {  // not the same work on the two sides (below): no ratio
      std::printf("%-10s %12.4f %16.4f %14s\n", name.c_str(), ma, mb, "n/a");
      return;
    }
    medians["ratio"][name] = mb / ma;
    std::printf("%-10s %12.4f %16.4f %13.2fx\n", name.c_str(), ma, mb, mb / ma);
  };
  for (const auto& phase : kPhases) row(phase, ours.at(phase), skip_torchvision ? nullptr : &theirs.at(phase));
  const auto our_steps = step_totals(ours);
  const auto their_steps = skip_torchvision ? std::vector<double>() : step_totals(theirs);
  row("step", our_steps, skip_torchvision ? nullptr : &their_steps);
  std::printf("(step = forward + backward + optimizer per iteration, its median; data is not in it: the trainer's\n"
              " loader makes batches on a background thread. instseg's data = making a synthetic batch;\n"
              " torchvision's = unpacking the same batch, already in memory, into its input lists.)\n");
  // The losses show both sides train alike (they part slowly: different sampling draws, float rounding).
  std::printf("instseg     %.2f images/s, loss %.3f (warm-up) -> %.3f\n", batch_size / median(our_steps),
              our_losses.front(), our_losses.back());
  if (!skip_torchvision) {
    const auto their_losses = report["torchvision"]["losses"].get<std::vector<double>>();
    std::printf("torchvision %.2f images/s, loss %.3f (warm-up) -> %.3f\n", batch_size / median(their_steps),
                their_losses.front(), their_losses.back());
    std::printf("ratio torchvision/instseg (step): %.2fx\n", median(their_steps) / median(our_steps));
  }
  report["median"] = medians;
  if (!json_file.empty()) {
    std::ofstream out(json_file);
    out << report.dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", json_file.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

// Errors (a failed torchvision side, an unreadable --weights) end the run with their message, after
// the temporary folder is removed (an uncaught exception would skip that).
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_bench: %s\n", e.what());
    return 1;
  }
}
