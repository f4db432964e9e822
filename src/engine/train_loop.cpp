// The loop and its step function (train_loop.h).
#include "engine/train_loop.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <c10/util/Exception.h>
#include <cmath>
#include <new>
#include <sstream>

#include "data/random.h"
#include "instseg/engine/lr_schedule.h"
#include "instseg/engine/step_settings.h"
#include "instseg/errors.h"
#include "instseg/ops/mixed_precision.h"

namespace instseg::training {

namespace {

// The first line of a LibTorch error, without its C++ backtrace.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace

std::string format_losses(const std::map<std::string, double>& losses) {
  static const std::vector<std::pair<std::string, std::string>> kShort = {
      {"loss_classifier", "cls"}, {"loss_box_reg", "box"}, {"loss_mask", "mask"},
      {"loss_objectness", "obj"}, {"loss_rpn_box_reg", "rpn"}};
  std::ostringstream out;
  out.precision(3);
  for (const auto& [key, name] : kShort) {
    const auto it = losses.find(key);
    if (it != losses.end()) out << name << " " << std::fixed << it->second << " ";
  }
  return out.str();
}

TrainLoop::TrainLoop(const TrainConfig& config_, std::string out_dir_, const TrainingData& data_, MaskRcnnImpl& model_,
                     Optimizer& optimizer_, data::DataLoader& loader_, JsonLinesLog& log_, TrainState state_,
                     bool resume_, std::chrono::steady_clock::time_point start_,
                     std::function<void(const std::string&, int)> probe, dist::Communicator& comm_)
    : config(config_),
      comm(comm_),
      out_dir(std::move(out_dir_)),
      data(data_),
      model(model_),
      optimizer(optimizer_),
      loader(loader_),
      log(log_),
      state(state_),
      resume(resume_),
      start(start_),
      schedule(config_.optim),
      committed(resume_),
      probe_(std::move(probe)) {
  // The schedule follows `optim`, whose length a time limit may have fitted (time_budget_hook).
  if (state.total_iterations > 0) schedule.iterations = state.total_iterations;
  first = iteration = state.iteration;
  last = stop_at();
  bf16_ = StepSettings::parse(state.step_settings, "train_state step_settings").bf16;
}

int TrainLoop::stop_at() const {
  return config.run.stop_after > 0 ? std::min(schedule.iterations, first + config.run.stop_after) : schedule.iterations;
}

void TrainLoop::set_total_iterations(int total) {
  schedule.iterations = total;
  state.total_iterations = total;
  last = stop_at();
}

double TrainLoop::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string TrainLoop::kept() const {
  return committed ? "; the last good checkpoint is kept in " + out_dir
                   : "; no checkpoint had been written, so the run's files were removed from " + out_dir;
}

TrainOutcome TrainLoop::run() {
  for (auto& hook : hooks_) hook->before_train(*this);
  while (iteration < last) {
    for (auto& hook : hooks_) hook->before_step(*this);
    if (stop_) break;
    run_step();
    ++iteration;
    for (auto& hook : hooks_) hook->after_step(*this);
    probe("iteration", iteration);
  }
  for (auto& hook : hooks_) hook->after_train(*this);
  outcome.iterations_done = iteration;
  return outcome;
}

uint64_t micro_batch_seed(uint64_t run_seed, int64_t iteration, int64_t block) {
  constexpr uint64_t kMicroBatchStream = 0x6d62;  // keeps these draws apart from the loader's streams
  return data::Rng({run_seed, kMicroBatchStream, static_cast<uint64_t>(iteration), static_cast<uint64_t>(block)}).next();
}

void TrainLoop::run_step() {
  using Clock = std::chrono::steady_clock;
  step = StepResult{};
  step.lr = learning_rate(schedule, iteration);
  const int world = comm.world_size();
  const int accumulate = config.optim.accumulate;
  const std::string at_iteration = " at iteration " + std::to_string(iteration + 1);
  if (world > 1 && !gradient_sync_) {
    std::vector<at::Tensor> trainable;
    for (const auto& p : model.parameters()) {
      if (p.requires_grad()) trainable.push_back(p);
    }
    gradient_sync_ = std::make_unique<dist::GradientSync>(comm, std::move(trainable));
  }
  std::vector<int64_t> indices;      // this rank's images of the step, for messages
  std::vector<int64_t> bad_indices;  // those of its micro-batches whose loss is not finite
  // The images (by file, else dataset index), for messages about a failed step.
  auto names = [&](const std::vector<int64_t>& of) {
    std::string out;
    for (const int64_t index : of) {
      std::string file;
      try {
        file = data.train_set()->get(index).file;
      } catch (...) {  // naming is best effort; the step's own failure is what gets reported
      }
      out += (out.empty() ? "" : ", ") + (file.empty() ? "#" + std::to_string(index) : file);
    }
    return out;
  };
  // Stop before a non-finite loss or gradient reaches the weights: the last checkpoint stays good.
  auto stop_non_finite = [&](const std::string& what, const std::string& where) {
    throw TrainingError("non-finite " + what + at_iteration + " on " + where + " (" + format_losses(step.losses) + ")" + kept());
  };
  // Per loss term (in the map's order, the same on every rank), the sum over this rank's
  // micro-batches; then the total's; then one "non-finite" flag per rank.
  std::map<std::string, double> loss_sums;
  double total_sum = 0.0;
  try {
    model.train();
    optimizer.zero_grad();
    for (int micro = 0; micro < accumulate; ++micro) {
      // An unreadable image is an InputError naming it (the loader names what it cannot load).
      const auto wait_start = Clock::now();
      const data::Batch batch = loader.next();
      step.data_seconds += std::chrono::duration<double>(Clock::now() - wait_start).count();
      indices.insert(indices.end(), batch.indices.begin(), batch.indices.end());
      step.images += static_cast<int>(batch.images.size());
      std::map<std::string, torch::Tensor> losses;
      const auto forward_start = Clock::now();
      {
        ops::Bf16AutocastScope autocast(bf16_);
        at::Generator generator =
            at::detail::createCPUGenerator(micro_batch_seed(static_cast<uint64_t>(config.run.seed), iteration, batch.block));
        losses = model.losses(batch.images, batch.targets, generator);
      }
      torch::Tensor total = torch::zeros({}, torch::kFloat);
      for (const auto& [name, value] : losses) {
        total = total + value;
        loss_sums[name] += value.item<double>();
      }
      step.forward_seconds += std::chrono::duration<double>(Clock::now() - forward_start).count();
      const double total_value = total.item<double>();
      total_sum += total_value;
      const bool last = micro + 1 == accumulate;
      if (gradient_sync_ && last) gradient_sync_->arm();
      // A non-finite loss has no useful gradient; the other ranks still reduce theirs (the
      // buckets this pass leaves empty are sent as they stand), then every rank stops below.
      if (!std::isfinite(total_value)) {
        bad_indices.insert(bad_indices.end(), batch.indices.begin(), batch.indices.end());
        continue;
      }
      const auto backward_start = Clock::now();
      total.backward();
      step.backward_seconds += std::chrono::duration<double>(Clock::now() - backward_start).count();
    }
    if (gradient_sync_) {
      gradient_sync_->finish(static_cast<double>(world) * accumulate);
      step.sync_seconds = gradient_sync_->last_wait_seconds();
    } else if (accumulate > 1) {
      torch::NoGradGuard no_grad;
      for (auto& p : model.parameters()) {
        if (p.grad().defined()) p.mutable_grad().div_(static_cast<double>(accumulate));
      }
    }
    // The losses of the whole global batch and who saw a non-finite one: one small all-reduce.
    std::vector<double> packed;
    for (const auto& [name, sum] : loss_sums) packed.push_back(sum);
    packed.push_back(total_sum);
    std::vector<double> flags(static_cast<size_t>(world), 0.0);
    flags[static_cast<size_t>(comm.rank())] = bad_indices.empty() ? 0.0 : 1.0;
    packed.insert(packed.end(), flags.begin(), flags.end());
    std::vector<at::Tensor> reduced = {torch::tensor(packed, torch::kFloat64)};
    if (world > 1) comm.all_reduce_sum(reduced);
    const double* sums = reduced[0].data_ptr<double>();
    const double micro_batches = static_cast<double>(world) * accumulate;
    size_t k = 0;
    for (const auto& [name, sum] : loss_sums) step.losses[name] = sums[k++] / micro_batches;
    step.total = sums[k++] / micro_batches;
    if (!bad_indices.empty()) {
      stop_non_finite("loss (" + std::to_string(step.total) + ")", "images: " + names(bad_indices));
    }
    for (int r = 0; r < world; ++r) {
      if (sums[k + static_cast<size_t>(r)] > 0) {
        stop_non_finite("loss", "rank " + std::to_string(r) + "'s images (that rank names them)");
      }
    }
    // The norm is one cheap pass; only a non-finite one needs the element-wise search for a name.
    // The gradients are averaged, so every rank finds the same norm and stops alike.
    const auto optimizer_start = Clock::now();
    step.grad_norm = optimizer.clip_grad_norm(config.optim.clip_grad_norm);
    if (!std::isfinite(step.grad_norm)) {
      const std::string bad = optimizer.first_non_finite_gradient();
      stop_non_finite(bad.empty() ? "gradient norm (overflow)" : "gradient in " + bad, "images: " + names(indices));
    }
    optimizer.step(step.lr);
    step.optimizer_seconds = std::chrono::duration<double>(Clock::now() - optimizer_start).count();
  } catch (const std::bad_alloc&) {
    throw TrainingError("out of memory" + at_iteration + " on images: " + names(indices) + "; lower optim.batch_size (" +
                        std::to_string(config.optim.batch_size) + ") or the input size (model.transform.max_size)" +
                        kept());
  } catch (const c10::Error& e) {
    throw TrainingError("iteration " + std::to_string(iteration + 1) + " failed on images: " + names(indices) + ": " +
                        first_line(e.what_without_backtrace()) + kept());
  }
  comm.mark_progress(iteration + 1);
}

}  // namespace instseg::training
