// The loop and its step function (train_loop.h).
#include "engine/train_loop.h"

#include <torch/torch.h>

#include <c10/util/Exception.h>
#include <cmath>
#include <new>
#include <sstream>

#include "instseg/engine/lr_schedule.h"
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

void TrainLoop::run_step() {
  // An unreadable image is an InputError naming it (the loader names what it cannot load).
  const data::Batch batch = loader.next();
  step = StepResult{};
  step.lr = learning_rate(schedule, iteration);
  const std::string at = " at iteration " + std::to_string(iteration + 1);
  // The images of the batch by file (or dataset index), for messages about a failed step.
  auto batch_names = [&] {
    std::string names;
    for (const int64_t index : batch.indices) {
      std::string file;
      try {
        file = data.train_set()->get(index).file;
      } catch (...) {  // naming is best effort; the step's own failure is what gets reported
      }
      names += (names.empty() ? "" : ", ") + (file.empty() ? "#" + std::to_string(index) : file);
    }
    return names;
  };
  // Stop before a non-finite loss or gradient reaches the weights: the last checkpoint stays good.
  auto stop_non_finite = [&](const std::string& what) {
    throw TrainingError("non-finite " + what + at + " on images: " + batch_names() + " (" + format_losses(step.losses) +
                        ")" + kept());
  };
  try {
    model.train();
    std::map<std::string, torch::Tensor> losses;
    {
      ops::Bf16AutocastScope autocast(uses_bf16(config.optim));
      losses = model.losses(batch.images, batch.targets);
    }
    torch::Tensor total = torch::zeros({}, torch::kFloat);
    for (const auto& [name, value] : losses) {
      total = total + value;
      step.losses[name] = value.item<double>();
    }
    step.total = total.item<double>();
    if (!std::isfinite(step.total)) stop_non_finite("loss (" + std::to_string(step.total) + ")");
    optimizer.zero_grad();
    total.backward();
    // The norm is one cheap pass; only a non-finite one needs the element-wise search for a name.
    step.grad_norm = optimizer.clip_grad_norm(config.optim.clip_grad_norm);
    if (!std::isfinite(step.grad_norm)) {
      const std::string bad = optimizer.first_non_finite_gradient();
      stop_non_finite(bad.empty() ? "gradient norm (overflow)" : "gradient in " + bad);
    }
    optimizer.step(step.lr);
  } catch (const std::bad_alloc&) {
    throw TrainingError("out of memory" + at + " on images: " + batch_names() + "; lower optim.batch_size (" +
                        std::to_string(config.optim.batch_size) + ") or the input size (model.transform.max_size)" +
                        kept());
  } catch (const c10::Error& e) {
    throw TrainingError("iteration " + std::to_string(iteration + 1) + " failed on images: " + batch_names() + ": " +
                        first_line(e.what_without_backtrace()) + kept());
  }
  step.images = static_cast<int>(batch.images.size());
}

}  // namespace instseg::training
