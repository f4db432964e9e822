#include "instseg/engine/demo.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "instseg/common/atomic_file.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/trainer.h"
#include "instseg/engine/training_data.h"
#include "instseg/errors.h"
#include "instseg/io/overlay.h"
#include "instseg/io/plot.h"
#include "instseg/ops/mixed_precision.h"

namespace instseg {

namespace fs = std::filesystem;

namespace {
constexpr double kAfterTrainingSeconds = 10.0;

// What a demo writes besides the trainer's files: its curves and the overlays it drew (found by
// their exact names, so --overwrite removes no picture the demo did not write).
std::vector<std::string> demo_file_names(const std::string& out_dir) {
  std::vector<std::string> names = {"curves_loss.png", "curves_ap.png"};
  static const std::regex kOverlay(R"(val_[0-9]+\.png)");
  std::error_code ec;
  for (fs::directory_iterator it(fs::path(out_dir) / "overlays", ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) name.resize(name.size() - 4);
    if (std::regex_match(name, kOverlay)) names.push_back("overlays/" + name);
  }
  return names;
}

// A folder holding a run (the trainer's files or the demo's) is refused unless options.overwrite;
// then the demo's own files go now, and the trainer removes its files once the new run can start.
void clear_previous_demo(const DemoOptions& options) {
  std::vector<std::string> names = run_file_names();
  const auto extras = demo_file_names(options.out_dir);
  names.insert(names.end(), extras.begin(), extras.end());
  const auto previous = existing_files(options.out_dir, names);
  if (previous.empty()) return;
  if (!options.overwrite) {
    std::string list;
    for (const auto& name : previous) list += (list.empty() ? "" : ", ") + name;
    throw ConfigError(options.out_dir + " already holds a run (" + list +
                      "): replace it with --overwrite (removes those files) or choose another --out");
  }
  remove_files(options.out_dir, extras);
  std::error_code ec;
  fs::remove(fs::path(options.out_dir) / "overlays", ec);  // only when empty; failing is fine
}
}  // namespace

void DemoOptions::validate() const {
  if (out_dir.empty()) throw ConfigError("demo: --out must not be empty");
  if (!(minutes >= 0.5)) throw ConfigError("demo: --minutes must be at least 0.5, got " + std::to_string(minutes));
  if (threads < 0) throw ConfigError("demo: --threads must be >= 0");
  if (overlays < 0) throw ConfigError("demo: --overlays must be >= 0");
}

TrainConfig demo_train_config(const DemoOptions& options) {
  TrainConfig config;
  config.data.kind = "synthetic";
  config.data.synthetic_train_images = 100000;  // generated on demand; a long run never repeats
  config.data.synthetic_val_images = 50;
  // Small images with large shapes: a 2-core CPU gets through ~4x more iterations than at 256 px,
  // and masks of 32-64 px objects can be scored at strict IoU thresholds.
  config.data.synthetic_image_size = 128;
  // Validation images hold 1-4 shapes; training images 2-6, which gives the heads more instances
  // per backbone pass (mask AP 0.499 vs 0.434 after 5 minutes, docs/benchmarks.md).
  config.data.synthetic_min_objects = 2;
  config.data.synthetic_max_objects = 6;
  config.data.synthetic_val_min_objects = 1;
  config.data.synthetic_val_max_objects = 4;
  config.data.synthetic_min_shape_size = 0.25;
  config.data.synthetic_max_shape_size = 0.5;
  config.model.variant = "v1";
  config.model.depth = 18;
  config.model.norm = "batch";        // from scratch: frozen statistics could not learn
  config.model.trainable_layers = 5;
  config.model.min_sizes = {128};     // the images' own size: no resizing cost
  config.model.max_size = 128;
  // Narrow heads: torchvision's 256-channel FPN, RPN and mask convs cost 4x the ResNet-18 body
  // here (bench/train_bench), and four shape classes do not need that capacity.
  config.model.fpn_channels = 64;
  config.model.box_representation_size = 256;
  config.model.mask_head_channels = 64;
  config.model.rpn_post_nms_top_n_train = 300;  // few objects per image: fewer RoIs, same quality
  config.model.rpn_post_nms_top_n_test = 300;
  // At most 16 foreground RoIs per image (of 1-4 objects) for the mask head, whose four convs
  // per RoI otherwise cost more than the backbone late in training.
  config.model.box_batch_size_per_image = 64;
  config.model.detections_per_image = 30;
  // Masks pasted where training sampled them: torchvision's paste moves a mask by up to a pixel,
  // which on these 32-64 px shapes costs most of the mask AP at IoU 0.9-0.95 (0.78-0.80 -> 0.84-0.86
  // on the same weights, docs/benchmarks.md).
  config.model.mask_paste = "aligned";
  // Batch 8 runs more images per second than 4 (part of a step's cost is per iteration, and
  // larger operations keep both cores busy) and learns as much per image (docs/benchmarks.md).
  config.optim.batch_size = 8;
  config.optim.iterations = 100000;   // an upper bound: the time limit fits the real count
  // From scratch in a few thousand iterations AdamW learns about 3x faster than SGD here (mask AP
  // 0.28 vs 0.09 after 400 iterations at batch 4, lr 1e-3; docs/benchmarks.md). Half as many
  // steps of twice the batch take a somewhat larger rate.
  config.optim.optimizer = "adamw";
  config.optim.lr = 0.0015;
  config.optim.warmup_iterations = 100;
  config.optim.schedule = "cosine";
  config.optim.clip_grad_norm = 10.0;  // from-scratch training has early loss spikes
  // bfloat16 convolutions and matrix products where the CPU has them: 1.45x the iterations in the
  // same time (docs/benchmarks.md); elsewhere bfloat16 would be emulated, slower than fp32.
  config.optim.precision = ops::cpu_has_native_bf16() ? "bf16" : "fp32";
  config.run.eval_every = 0;
  config.run.checkpoint_every = 500;  // a checkpoint takes ~1 s; the demo is rarely resumed
  config.run.threads = options.threads;
  // The overlays, curves and table after training take a few seconds; the whole demo keeps to --minutes.
  config.run.time_limit_minutes = options.minutes - kAfterTrainingSeconds / 60.0;
  return config;
}

DemoOutcome run_demo(const DemoOptions& options) {
  options.validate();
  const TrainConfig config = demo_train_config(options);
  clear_previous_demo(options);
  std::printf("demo: training Mask R-CNN (ResNet-18-FPN, narrow heads, from scratch) on synthetic shapes for %.1f minutes\n",
              options.minutes);
  TrainRunOptions run_options;
  run_options.existing_run = options.overwrite ? ExistingRun::kOverwrite : ExistingRun::kRefuse;
  const TrainOutcome outcome = train(config, options.out_dir, run_options);

  // Curves of the run, from what the trainer recorded.
  PlotSeries loss{"total loss", {}, {}};
  for (const auto& [iteration, value] : outcome.loss_history) {
    loss.x.push_back(iteration);
    loss.y.push_back(value);
  }
  LinePlotOptions loss_plot;
  loss_plot.title = "training loss";
  loss_plot.x_label = "iteration";
  loss_plot.y_label = "loss";
  save_line_plot((fs::path(options.out_dir) / "curves_loss.png").string(), {loss}, loss_plot);
  PlotSeries box{"box AP", {}, {}}, mask{"mask AP", {}, {}};
  for (const auto& v : outcome.validations) {
    box.x.push_back(v.iteration);
    box.y.push_back(v.bbox_stats[0]);
    mask.x.push_back(v.iteration);
    mask.y.push_back(v.segm_stats[0]);
  }
  LinePlotOptions ap_plot;
  ap_plot.title = "validation AP (0.50:0.95)";
  ap_plot.x_label = "iteration";
  ap_plot.y_label = "AP";
  ap_plot.y_min = 0;
  ap_plot.y_max = 1;
  save_line_plot((fs::path(options.out_dir) / "curves_ap.png").string(), {box, mask}, ap_plot);

  // Pictures of validation images with the final model's detections.
  const TrainingData data(config.data);
  // The checkpoint holds weights only: inference must use the size the model was trained at, not
  // load_mask_rcnn's default of 800 px, at which these shapes would look six times too large, and
  // the mask paste it was validated with.
  ModelOverrides as_trained;
  as_trained.min_size = config.model.min_sizes.back();
  as_trained.max_size = config.model.max_size;
  as_trained.mask_paste = mask_paste_named(config.model.mask_paste, "model.mask_paste");
  MaskRcnn model = load_mask_rcnn((fs::path(options.out_dir) / "model_last.pth").string(), as_trained);
  const fs::path overlay_dir = fs::path(options.out_dir) / "overlays";
  fs::create_directories(overlay_dir);
  const auto names = data.categories().class_names();
  OverlayOptions overlay_options;
  overlay_options.scale = std::max(1, 512 / config.data.synthetic_image_size);  // readable labels
  const int64_t count = std::min<int64_t>(options.overlays, data.val_set()->size());
  for (int64_t i = 0; i < count; ++i) {
    const auto sample = data.val_set()->get(i);
    const auto detections = model->predict({sample.image})[0];
    write_bytes_atomically((overlay_dir / ("val_" + std::to_string(sample.image_id) + ".png")).string(),
                           render_overlay(sample.image, detections, names, overlay_options, ".png"));
  }

  DemoOutcome result;
  result.iterations = outcome.iterations_done;
  if (!outcome.validations.empty()) {
    const auto& last = outcome.validations.back();
    result.box_ap = last.bbox_stats[0];
    result.mask_ap = last.segm_stats[0];
    std::printf("\n%-6s %7s %7s %7s %7s %7s %7s\n", "", "AP", "AP50", "AP75", "APs", "APm", "APl");
    for (const auto& [label, stats] : {std::pair{"box", last.bbox_stats}, std::pair{"mask", last.segm_stats}}) {
      std::printf("%-6s %7.3f %7.3f %7.3f %7.3f %7.3f %7.3f\n", label, stats[0], stats[1], stats[2], stats[3],
                  stats[4], stats[5]);
    }
  }
  std::printf("\n%d iterations in %.0f s. Files in %s: model_last.pth, metrics.json, val_annotations.json,\n"
              "val_predictions.json, log.jsonl, curves_loss.png, curves_ap.png, overlays/\n"
              "Segment your own pictures with it (at the %d px it was trained at and with its mask paste, from config.json):\n"
              "  instseg predict --weights %s --input IMAGES --out DIR\n",
              result.iterations, outcome.seconds, options.out_dir.c_str(), *as_trained.min_size,
              (fs::path(options.out_dir) / "model_last.pth").c_str());
  return result;
}

}  // namespace instseg
