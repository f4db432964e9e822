#include "instseg/engine/trainer.h"

#include <torch/torch.h>

#include <filesystem>
#include <thread>

#include "engine/train_loop.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/coco/instances_writer.h"
#include "instseg/distributed/communicator.h"
#include "instseg/common/atomic_file.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/training_data.h"
#include "instseg/errors.h"

// train() prepares a run (folder, data, model, resumed state) and hands it to a TrainLoop: a step
// function plus hooks for the time budget, the log, the progress bar, validation and checkpoints
// (engine/train_loop.h, engine/hooks/).
namespace instseg {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "train_state.pth";
constexpr const char* kLastFile = "model_last.pth";
constexpr const char* kLogFile = "log.jsonl";

OptimizerOptions optimizer_options(const OptimConfig& optim) {
  OptimizerOptions options;
  options.kind = optim.optimizer == "adamw" ? OptimizerOptions::Kind::kAdamW : OptimizerOptions::Kind::kSgd;
  options.momentum = optim.momentum;
  options.weight_decay = optim.weight_decay;
  options.beta1 = optim.beta1;
  options.beta2 = optim.beta2;
  return options;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// Where the training split comes from, for messages about its size.
std::string training_source(const DataConfig& config) {
  if (config.kind == "synthetic") return "data.synthetic_train_images";
  return config.kind == "coco" ? config.train_annotations : config.train_images;
}

// The loader hands out each image once per epoch and never lets a batch span two epochs, so a
// batch holds at most the split's image count: a larger batch_size would silently mean "the whole
// split per step" (and is the usual typo behind a step that exhausts memory).
void check_batch_size(const TrainConfig& config, const TrainingData& data) {
  const int64_t images = data.train_set()->size();
  if (images == 0) throw InputError(training_source(config.data) + ": the training split has no images");
  if (config.optim.batch_size > images) {
    throw ConfigError("optim.batch_size " + std::to_string(config.optim.batch_size) + " exceeds the " +
                      std::to_string(images) + " images of the training split (" + training_source(config.data) +
                      "); a batch holds distinct images of one epoch, so it must be at most " + std::to_string(images));
  }
}

}  // namespace

const std::vector<std::string>& run_file_names() {
  static const std::vector<std::string> kNames = {
      "config.json",    "categories.json", "log.jsonl",    kLastFile,  "model_best.pth",
      kStateFile,       "metrics.json",    "val_predictions.json",  "val_annotations.json"};
  return kNames;
}

std::vector<std::string> existing_files(const std::string& dir, const std::vector<std::string>& names) {
  std::vector<std::string> found;
  for (const auto& name : names) {
    for (const std::string& candidate : {name, name + ".tmp"}) {
      std::error_code ec;  // symlink_status: a dangling link is still something to refuse or remove
      if (fs::symlink_status(fs::path(dir) / candidate, ec).type() != fs::file_type::not_found && !ec) {
        found.push_back(candidate);
      }
    }
  }
  return found;
}

void remove_files(const std::string& dir, const std::vector<std::string>& names) {
  for (const auto& name : existing_files(dir, names)) {
    std::error_code ec;
    fs::remove(fs::path(dir) / name, ec);
    if (ec) throw InputError((fs::path(dir) / name).string() + ": cannot remove: " + ec.message());
  }
}

TrainOutcome train(const TrainConfig& config, const std::string& out_dir, bool resume) {
  TrainRunOptions options;
  options.existing_run = resume ? ExistingRun::kResume : ExistingRun::kRefuse;
  return train(config, out_dir, options);
}

TrainOutcome train(const TrainConfig& config, const std::string& out_dir, const TrainRunOptions& run_options) {
  config.validate();
  const bool resume = run_options.existing_run == ExistingRun::kResume;
  const auto start = std::chrono::steady_clock::now();
  const fs::path dir(out_dir);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw InputError(out_dir + ": exists and is not a folder (--out names the run folder)");
  }
  // A finished run is hours of work: it is replaced only when asked to.
  if (const auto previous = existing_files(out_dir, run_file_names());
      !previous.empty() && run_options.existing_run == ExistingRun::kRefuse) {
    throw ConfigError(out_dir + " already holds a training run (" + join(previous) +
                      "): continue it with --resume, replace it with --overwrite (removes those files), or "
                      "choose another --out");
  }
  const std::string state_path = (dir / kStateFile).string();
  if (resume && !fs::exists(state_path)) {
    throw CheckpointError(state_path + ": nothing to resume (no complete checkpoint in " + out_dir + ")");
  }
  torch::set_num_threads(config.run.threads > 0 ? config.run.threads
                                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));

  // Everything that can fail on the user's data, weights or state comes before the first write.
  const TrainingData data(config.data);
  check_batch_size(config, data);
  MaskRcnn model = build_mask_rcnn_for_training(config.model, data.num_classes());
  Optimizer optimizer(*model, optimizer_options(config.optim));
  training::TrainState state;
  if (resume) state = training::load_train_state(state_path, *model, optimizer, config.optim.optimizer);
  data::LoaderOptions loader_options;
  loader_options.batch_size = config.optim.batch_size;
  loader_options.hflip_prob = config.data.horizontal_flip ? 0.5 : 0.0;
  loader_options.seed = static_cast<uint64_t>(config.run.seed);
  data::DataLoader loader(data.train_set(), loader_options, state.loader);

  const bool created_dir = !fs::exists(dir);
  fs::create_directories(dir, ec);
  if (ec) throw InputError(out_dir + ": cannot create the run folder: " + ec.message());
  // Only now that the new run can start: model.weights may have named the old run's model_last.pth.
  if (run_options.existing_run == ExistingRun::kOverwrite) remove_files(out_dir, run_file_names());
  // A resumed run has a checkpoint on disk; a fresh one has none until its first commit, and
  // removes what it wrote if it fails before then, rather than leave a folder that looks like a run.
  bool committed = resume;
  TrainOutcome outcome;
  try {
    // The model as built (model.num_classes from the data): the description load_model() rebuilds.
    TrainConfig described = config;
    described.model.options = model->options();
    write_bytes_atomically((dir / "config.json").string(), described.to_json() + "\n");
    // Beside the weights, so predict names the classes and writes the data's category ids.
    write_bytes_atomically((dir / "categories.json").string(), data.categories().to_json());
    if (data.val_set() != nullptr && data.val_set()->size() > 0) {
      coco::write_instances((dir / "val_annotations.json").string(), data.val_ground_truth());
    }
    training::JsonLinesLog log((dir / kLogFile).string(), resume, state.log_bytes);
    std::unique_ptr<dist::Communicator> one_process;
    if (run_options.communicator == nullptr) one_process = dist::single_process();
    dist::Communicator& comm = run_options.communicator ? *run_options.communicator : *one_process;
    training::TrainLoop loop(config, out_dir, data, *model, optimizer, loader, log, state, resume, start,
                             run_options.probe, comm);
    // after_step runs them in this order: the fit changes the length the log and the bar show;
    // a validation comes before the checkpoint that records its best score.
    loop.register_hook(training::time_budget_hook());
    loop.register_hook(training::log_hook());
    loop.register_hook(training::progress_hook());
    loop.register_hook(training::validation_hook());
    loop.register_hook(training::checkpoint_hook());
    try {
      outcome = loop.run();
    } catch (...) {
      committed = loop.committed;
      throw;
    }
  } catch (...) {
    if (!committed) {
      try {
        remove_files(out_dir, run_file_names());
        if (created_dir && fs::is_empty(dir)) fs::remove(dir);
      } catch (...) {  // the failure being reported matters more than the leftovers
      }
    }
    throw;
  }
  outcome.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return outcome;
}

}  // namespace instseg
