#pragma once
// The training loop's parts, private to the engine (train() in trainer.cpp is the public entry):
// a step function (one iteration: batch, losses, checks, backward, clipping, update) and hooks
// that do everything around it, in the spirit of Detectron2's SimpleTrainer + HookBase:
//
//   for each hook: before_train
//   while iteration < last:
//     for each hook: before_step     (may stop the run: the time limit)
//     run_step(); ++iteration
//     for each hook: after_step      (in registration order: time budget, log, progress,
//     probe("iteration")              validation, checkpoint)
//   for each hook: after_train       (progress ends, final validation, final checkpoint)
//
// Hooks read and change the loop's public state (as Detectron2's hooks use `self.trainer`).
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "instseg/data/loader.h"
#include "instseg/distributed/communicator.h"
#include "instseg/distributed/gradient_sync.h"
#include "instseg/engine/optimizer.h"
#include "instseg/engine/trainer.h"
#include "instseg/engine/training_data.h"
#include "instseg/modeling/mask_rcnn.h"

namespace instseg::training {

// Everything --resume needs to continue exactly as if the run had not stopped.
struct TrainState {
  int iteration = 0;         // iterations completed
  int total_iterations = 0;  // the run's length once fitted to a time limit; 0 = optim.iterations
  double best_score = -1.0;
  data::LoaderPosition loader;
  int64_t log_bytes = -1;  // length of log.jsonl when the state was written; -1 = not recorded
  // StepSettings::name() of the run's precision and layout (engine/step_settings.h), chosen at its
  // start; "" in states written before it was recorded (then the config decides as it did).
  std::string step_settings;
};

// train_state.pth (train_state.cpp): weights, optimizer state and kind, the global RNG, TrainState.
void save_train_state(const std::string& path, const MaskRcnnImpl& model, const Optimizer& optimizer,
                      const std::string& optimizer_kind, const TrainState& state);
// Loads the weights and optimizer state, restores the global RNG; CheckpointError naming the file.
TrainState load_train_state(const std::string& path, MaskRcnnImpl& model, Optimizer& optimizer,
                            const std::string& optimizer_kind);
// The optimizer state and TrainState of train_state.pth (not the weights, not the RNG) as bytes, and
// back: what rank 0 broadcasts on resume, so the other ranks need no access to the run folder.
std::string train_progress_bytes(const Optimizer& optimizer, const TrainState& state);
TrainState read_train_progress_bytes(const std::string& bytes, Optimizer& optimizer);

// log.jsonl: one JSON object per line, flushed, its length counted (json_lines_log.cpp).
class JsonLinesLog {
 public:
  // A fresh log, or (resume) the existing one cut back to `keep_bytes`, the length the checkpoint
  // recorded: the records after it (and a line half-written by a kill) are dropped, since the
  // resumed run writes them again. keep_bytes < 0 (a state written before log lengths were
  // recorded) or a log shorter than it (edited by hand) keeps the log as it is.
  JsonLinesLog(const std::string& path, bool resume, int64_t keep_bytes);
  void write(const std::string& json_object);  // one record, without the newline
  int64_t bytes() const { return bytes_; }

 private:
  std::string path_;
  std::ofstream out_;
  int64_t bytes_ = 0;
};

// What one step did, for the hooks after it. Losses are means over the step's global
// micro-batches (every rank's), so every rank holds the same numbers.
struct StepResult {
  std::map<std::string, double> losses;  // torchvision's loss terms
  double total = 0.0;
  double grad_norm = 0.0;  // before clipping, of the averaged gradient
  double lr = 0.0;
  int images = 0;              // this rank's
  double data_seconds = 0.0;   // waiting for the loader
  double forward_seconds = 0.0;    // the losses (forward passes), summed over micro-batches
  double backward_seconds = 0.0;   // the backward passes
  double optimizer_seconds = 0.0;  // gradient norm, clipping and the update
  double sync_seconds = 0.0;   // waiting for gradient all-reduces after the last backward pass
};

// The seed of the generator global micro-batch `block` of iteration `iteration` draws its RPN/RoI
// sampling and size choices from: data/random.h's SplitMix64 mix of (run.seed, a stream key,
// iteration, block), so a rank draws what the same block draws in one process, whatever the
// world size and accumulate.
uint64_t micro_batch_seed(uint64_t run_seed, int64_t iteration, int64_t block);

class TrainLoop;

class HookBase {
 public:
  virtual ~HookBase() = default;
  virtual void before_train(TrainLoop&) {}
  virtual void before_step(TrainLoop&) {}  // cheap; may call TrainLoop::stop_by_time_limit()
  virtual void after_step(TrainLoop&) {}   // loop.iteration counts the step just done
  virtual void after_train(TrainLoop&) {}
};

// What a run works on, read and changed by the step and the hooks.
class TrainLoop {
 public:
  TrainLoop(const TrainConfig& config, std::string out_dir, const TrainingData& data, MaskRcnnImpl& model,
            Optimizer& optimizer, data::DataLoader& loader, JsonLinesLog& log, TrainState state, bool resume,
            std::chrono::steady_clock::time_point start, std::function<void(const std::string&, int)> probe,
            dist::Communicator& comm);

  void register_hook(std::unique_ptr<HookBase> hook) { hooks_.push_back(std::move(hook)); }
  // Trains from state.iteration to `last`; the outcome's timing is left to the caller.
  TrainOutcome run();
  // One iteration (index `iteration`, one optimizer step) on this rank's optim.accumulate
  // micro-batches; gradients averaged over every rank's micro-batches; fills `step`. Throws
  // TrainingError (non-finite loss or gradient, out of memory, a LibTorch failure) naming the
  // iteration and the batch's images, before anything non-finite reaches the weights; a
  // non-finite loss or gradient stops every rank at the same step.
  void run_step();

  // The run's length may change (time-limit fits): the schedule, the checkpointed total and
  // where this invocation stops follow.
  void set_total_iterations(int total);
  void stop_by_time_limit() { stop_ = outcome.stopped_by_time_limit = true; }
  double elapsed_seconds() const;  // since train() was called
  // Where a failure leaves the run folder, for error messages.
  std::string kept() const;
  void probe(const std::string& moment, int at) const {
    if (probe_) probe_(moment, at);
  }
  bool has_validation() const { return data.val_set() != nullptr && data.val_set()->size() > 0; }
  // The run reached its (possibly fitted) end or its time limit; a pause (run.stop_after) did not.
  bool finished() const { return iteration == schedule.iterations || outcome.stopped_by_time_limit; }
  // A resumed run whose last checkpoint is its end: validating or committing again would repeat it.
  bool nothing_left() const { return resume && first >= last; }

  const TrainConfig& config;
  dist::Communicator& comm;  // the job's ranks (one: every collective returns at once)
  const std::string out_dir;
  const TrainingData& data;
  MaskRcnnImpl& model;
  Optimizer& optimizer;
  data::DataLoader& loader;
  JsonLinesLog& log;
  TrainState state;        // what the next checkpoint writes
  const bool resume;
  const std::chrono::steady_clock::time_point start;
  OptimConfig schedule;    // config.optim with the run's (possibly fitted) length
  int first = 0;           // the iteration this invocation started from
  int iteration = 0;       // iterations completed
  int last = 0;            // this invocation stops here (run.stop_after, the schedule's end)
  bool committed = false;  // a checkpoint exists on disk (resumed, or written by this run)
  StepResult step;         // the last step's
  TrainOutcome outcome;

 private:
  int stop_at() const;
  std::vector<std::unique_ptr<HookBase>> hooks_;
  std::function<void(const std::string&, int)> probe_;
  bool stop_ = false;
  bool bf16_ = false;  // the forward passes under bf16 autocast (state.step_settings)
  // Several ranks: the gradient buckets, over the trainable parameters, built once. One process
  // averages its micro-batches' gradients locally.
  std::unique_ptr<dist::GradientSync> gradient_sync_;
};

// The hooks, one file each under src/engine/hooks/.
std::unique_ptr<HookBase> time_budget_hook();  // fits the run's length to run.time_limit_minutes
std::unique_ptr<HookBase> log_hook();          // log.jsonl train records, outcome.loss_history
std::unique_ptr<HookBase> progress_hook();     // the progress bar (run.progress)
std::unique_ptr<HookBase> validation_hook();   // every run.eval_every and at the end
std::unique_ptr<HookBase> checkpoint_hook();   // every run.checkpoint_every and at the end

// The loss terms shortened for progress lines and messages: "cls 0.123 box 0.045 ...".
std::string format_losses(const std::map<std::string, double>& losses);

}  // namespace instseg::training
