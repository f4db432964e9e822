#include "instseg/engine/demo.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "instseg/common/atomic_file.h"
#include "engine/demo_recipe.h"
#include "instseg/engine/inference.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/trainer.h"
#include "instseg/engine/training_data.h"
#include "instseg/errors.h"
#include "instseg/io/overlay.h"
#include "instseg/io/plot.h"

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
  config.apply_json(demo_recipe_json(), "configs/demo.json");
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

  // Pictures of validation images with the final model's detections, the model loaded as predict
  // loads it from the run folder: its config.json describes the model that was validated.
  const TrainingData data(config.data);
  const LoadedModel loaded = load_model(options.out_dir);
  MaskRcnn model = loaded.model;
  const fs::path overlay_dir = fs::path(options.out_dir) / "overlays";
  fs::create_directories(overlay_dir);
  const auto names = data.categories().class_names();
  OverlayOptions overlay_options;
  overlay_options.scale = std::max(1, 512 / config.data.synthetic_image_size);  // readable labels
  const int64_t count = std::min<int64_t>(options.overlays, data.val_set()->size());
  inference_on_dataset(
      *model, count,
      [&](int64_t i) {
        const auto sample = data.val_set()->get(i);
        return InferenceInput{sample.image, sample.image_id, sample.file};
      },
      [&](const ImageInference& r) {
        write_bytes_atomically(
            (overlay_dir / ("val_" + std::to_string(r.input.image_id) + ".png")).string(),
            render_overlay(r.input.image, r.detections, [&](int64_t k) { return r.masks.paste(k); }, names,
                           overlay_options, ".png"));
      });

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
  std::printf("\n%d iterations in %.0f s. Files in %s: model_last.pth, config.json, metrics.json,\n"
              "val_annotations.json, val_predictions.json, log.jsonl, curves_loss.png, curves_ap.png, overlays/\n"
              "Segment your own pictures with it (the run folder's config.json describes the validated model):\n"
              "  instseg predict --weights %s --input IMAGES --out DIR\n",
              result.iterations, outcome.seconds, options.out_dir.c_str(), options.out_dir.c_str());
  return result;
}

}  // namespace instseg
