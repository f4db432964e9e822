#include "instseg/engine/trainer.h"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <thread>

#include "engine/train_loop.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/coco/instances_writer.h"
#include "instseg/distributed/communicator.h"
#include "instseg/common/atomic_file.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/step_settings.h"
#include "instseg/engine/training_data.h"
#include "instseg/errors.h"
#include "instseg/ops/mixed_precision.h"

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
// split per step" (and is the usual typo behind a step that exhausts memory). A step's global
// batch (ranks x batch_size x accumulate) must fit likewise.
void check_batch_size(const TrainConfig& config, const TrainingData& data, int ranks) {
  const int64_t images = data.train_set()->size();
  if (images == 0) throw InputError(training_source(config.data) + ": the training split has no images");
  const int64_t global = int64_t{ranks} * config.optim.batch_size * config.optim.accumulate;
  if (global > images) {
    const std::string what =
        global == config.optim.batch_size
            ? "optim.batch_size " + std::to_string(config.optim.batch_size)
            : "the global batch of " + std::to_string(global) + " images (optim.batch_size " +
                  std::to_string(config.optim.batch_size) + " x optim.accumulate " +
                  std::to_string(config.optim.accumulate) + " x " + std::to_string(ranks) + " ranks)";
    throw ConfigError(what + " exceeds the " + std::to_string(images) + " images of the training split (" +
                      training_source(config.data) + "); a batch holds distinct images of one epoch, so it must be at most " +
                      std::to_string(images));
  }
}

// LibTorch 1.13's CPU build has no SyncBatchNorm: batch norm that trains would normalise each
// rank's micro-batch alone, and the ranks' running statistics would drift apart.
void check_norms_for_ranks(const TrainConfig& config, int ranks) {
  if (ranks <= 1) return;
  const MaskRcnnOptions& o = config.model.options;
  const std::vector<std::pair<std::string, NormKind>> norms = {{"model.backbone.norm", o.backbone.norm},
                                                               {"model.backbone.fpn_norm", o.backbone.fpn_norm},
                                                               {"model.roi_heads.head_norm", o.roi_heads.head_norm}};
  for (const auto& [key, kind] : norms) {
    if (kind == NormKind::kBatchNorm) {
      throw ConfigError(key + " is batch_norm, which trains per rank: a job of " + std::to_string(ranks) +
                        " ranks cannot synchronise it (no SyncBatchNorm in this LibTorch); use group_norm, or "
                        "frozen_batch_norm for a pretrained backbone, or train in one process");
    }
  }
}

// Runs `prepare` on this rank, then every rank learns whether all of them succeeded: a failure one
// rank alone sees (rank 0's run folder, its resumed state) fails every rank with its message,
// instead of leaving the others waiting in the next collective until the timeout.
void agree(dist::Communicator& comm, const std::function<void()>& prepare) {
  std::exception_ptr error;
  std::string status;  // empty: fine; else a kind letter and the message
  try {
    prepare();
  } catch (const ConfigError& e) {
    error = std::current_exception(), status = std::string("C") + e.what();
  } catch (const CheckpointError& e) {
    error = std::current_exception(), status = std::string("K") + e.what();
  } catch (const InputError& e) {
    error = std::current_exception(), status = std::string("I") + e.what();
  } catch (const std::exception& e) {
    error = std::current_exception(), status = std::string("E") + e.what();
  }
  if (comm.world_size() == 1) {
    if (error) std::rethrow_exception(error);
    return;
  }
  const std::vector<std::string> all = comm.all_gather_bytes(status);
  if (error) std::rethrow_exception(error);
  for (size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty()) continue;
    const std::string message = "rank " + std::to_string(r) + ": " + all[r].substr(1);
    switch (all[r][0]) {
      case 'C': throw ConfigError(message);
      case 'K': throw CheckpointError(message);
      case 'I': throw InputError(message);
      default: throw DistributedError(message);
    }
  }
}

// Rank 0's weights and buffers on every rank (in place).
void broadcast_model(dist::Communicator& comm, MaskRcnnImpl& model) {
  if (comm.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> targets;
  for (const auto& p : model.parameters()) targets.push_back(p.detach());
  for (const auto& b : model.buffers()) targets.push_back(b.detach());
  std::vector<at::Tensor> sent;
  for (const auto& t : targets) sent.push_back(t.is_contiguous() ? t : t.contiguous());
  comm.broadcast(sent, 0);
  for (size_t i = 0; i < targets.size(); ++i) {
    if (!sent[i].is_same(targets[i])) targets[i].copy_(sent[i]);
  }
}

// A resumed run: rank 0 read train_state.pth; every rank gets its optimizer state and TrainState,
// so the other ranks need no access to the run folder.
void broadcast_resumed_state(dist::Communicator& comm, Optimizer& optimizer, training::TrainState& state) {
  if (comm.world_size() == 1) return;
  const std::string bytes =
      dist::broadcast_bytes(comm, comm.is_main() ? training::train_progress_bytes(optimizer, state) : std::string(), 0);
  if (!comm.is_main()) state = training::read_train_progress_bytes(bytes, optimizer);
}

// The step's precision and layout (engine/step_settings.h) into state.step_settings and the model.
// A resumed run keeps the ones it recorded; a state from before they were recorded continues as
// its config then decided (precision "auto" by the CPU's bf16 flag, the contiguous layout); a fresh
// run times the candidates its config leaves open on one batch of its own data, drawn by a loader
// of its own so the run's data order is untouched.
void choose_step_settings(const TrainConfig& config, const TrainingData& data, data::LoaderOptions loader_options,
                          bool resume, const std::string& state_path, MaskRcnnImpl& model, dist::Communicator& comm,
                          training::TrainState& state) {
  StepChoice choice;
  if (resume && !state.step_settings.empty()) {
    choice.chosen = StepSettings::parse(state.step_settings, state_path);
  } else if (resume) {
    choice.chosen.bf16 = config.optim.precision == "bf16" ||
                         (config.optim.precision == "auto" && ops::cpu_has_native_bf16());
    choice.chosen.channels_last = config.optim.memory_format == "channels_last";
  } else {
    loader_options.prefetch_batches = 0;
    loader_options.hflip_prob = 0.0;
    auto probe_batch = [&] { return data::DataLoader(data.train_set(), loader_options).next(); };
    choice = measure_step_settings(model, probe_batch, config.optim, &comm);
  }
  apply_step_settings(model, choice.chosen);
  state.step_settings = choice.chosen.name();
  if (comm.is_main() && config.run.progress) std::fprintf(stderr, "train: %s\n", choice.summary().c_str());
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
  std::unique_ptr<dist::Communicator> one_process;
  if (run_options.communicator == nullptr) one_process = dist::single_process();
  dist::Communicator& comm = run_options.communicator ? *run_options.communicator : *one_process;
  // Only rank 0 touches the run folder: the others may run on machines that do not share it.
  const bool main = comm.is_main();
  check_norms_for_ranks(config, comm.world_size());
  const bool resume = run_options.existing_run == ExistingRun::kResume;
  const auto start = std::chrono::steady_clock::now();
  const fs::path dir(out_dir);
  const std::string state_path = (dir / kStateFile).string();
  torch::set_num_threads(config.run.threads > 0 ? config.run.threads
                                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));

  // Everything that can fail on the user's data, weights or state comes before the first write.
  std::optional<TrainingData> data;
  MaskRcnn model{nullptr};
  std::optional<Optimizer> optimizer;
  training::TrainState state;
  agree(comm, [&] {
    if (main) {
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
      if (resume && !fs::exists(state_path)) {
        throw CheckpointError(state_path + ": nothing to resume (no complete checkpoint in " + out_dir + ")");
      }
    }
    data.emplace(config.data);
    check_batch_size(config, *data, comm.world_size());
    model = build_mask_rcnn_for_training(config.model, data->num_classes());
    optimizer.emplace(*model, optimizer_options(config.optim));
    if (resume && main) state = training::load_train_state(state_path, *model, *optimizer, config.optim.optimizer);
  });
  // Every rank starts from rank 0's weights (built from its seed or model.weights, or resumed).
  broadcast_model(comm, *model);
  if (resume) broadcast_resumed_state(comm, *optimizer, state);
  data::LoaderOptions loader_options;
  loader_options.batch_size = config.optim.batch_size;
  loader_options.hflip_prob = config.data.horizontal_flip ? 0.5 : 0.0;
  loader_options.seed = static_cast<uint64_t>(config.run.seed);
  loader_options.ranks = comm.world_size();
  loader_options.rank = comm.rank();
  loader_options.accumulate = config.optim.accumulate;
  data::DataLoader loader(data->train_set(), loader_options, state.loader);
  choose_step_settings(config, *data, loader_options, resume, state_path, *model, comm, state);

  const bool created_dir = main && !fs::exists(dir);
  // A resumed run has a checkpoint on disk; a fresh one has none until its first commit, and
  // removes what it wrote if it fails before then, rather than leave a folder that looks like a run.
  bool committed = resume;
  TrainOutcome outcome;
  try {
    std::optional<training::JsonLinesLog> log;
    agree(comm, [&] {
      if (!main) {
        log.emplace("/dev/null", false, -1);  // the log hook writes on rank 0 only; a sink to be safe
        return;
      }
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ec) throw InputError(out_dir + ": cannot create the run folder: " + ec.message());
      // Only now that the new run can start: model.weights may have named the old run's model_last.pth.
      if (run_options.existing_run == ExistingRun::kOverwrite) remove_files(out_dir, run_file_names());
      // The model as built (model.num_classes from the data): the description load_model() rebuilds.
      TrainConfig described = config;
      described.model.options = model->options();
      write_bytes_atomically((dir / "config.json").string(), described.to_json() + "\n");
      // Beside the weights, so predict names the classes and writes the data's category ids.
      write_bytes_atomically((dir / "categories.json").string(), data->categories().to_json());
      if (data->val_set() != nullptr && data->val_set()->size() > 0) {
        coco::write_instances((dir / "val_annotations.json").string(), data->val_ground_truth());
      }
      log.emplace((dir / kLogFile).string(), resume, state.log_bytes);
    });
    training::TrainLoop loop(config, out_dir, *data, *model, *optimizer, loader, *log, state, resume, start,
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
    if (!committed && main) {
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
