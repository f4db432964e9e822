#include "instseg/engine/trainer.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "instseg/checkpoint/load.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/common/atomic_file.h"
#include "instseg/common/progress_bar.h"
#include "instseg/engine/lr_schedule.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/results_json.h"
#include "instseg/engine/optimizer.h"
#include "instseg/data/loader.h"
#include "instseg/engine/training_data.h"
#include "instseg/errors.h"
#include "instseg/evaluation/coco_evaluator.h"
#include "instseg/evaluation/report.h"
#include "instseg/ops/mixed_precision.h"

namespace instseg {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kStateFile = "train_state.pth";

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Appends one JSON object per line and flushes, so a killed run keeps every record written.
class JsonLinesLog {
 public:
  JsonLinesLog(const std::string& path, bool append)
      : out_(path, append ? std::ios::app : std::ios::trunc) {
    if (!out_) throw InputError(path + ": cannot open log for writing");
  }
  void write(const json& record) {
    out_ << record.dump() << "\n";
    out_.flush();
  }

 private:
  std::ofstream out_;
};

// Everything --resume needs to continue exactly as if the run had not stopped.
struct TrainState {
  int iteration = 0;  // iterations completed
  int total_iterations = 0;  // the run's length once fitted to a time limit; 0 = optim.iterations
  double best_score = -1.0;
  data::LoaderPosition loader;
};

OptimizerOptions optimizer_options(const OptimConfig& optim) {
  OptimizerOptions options;
  options.kind = optim.optimizer == "adamw" ? OptimizerOptions::Kind::kAdamW : OptimizerOptions::Kind::kSgd;
  options.momentum = optim.momentum;
  options.weight_decay = optim.weight_decay;
  options.beta1 = optim.beta1;
  options.beta2 = optim.beta2;
  return options;
}

void save_train_state(const std::string& path, const MaskRcnnImpl& model, const Optimizer& optimizer,
                      const std::string& optimizer_kind, const TrainState& state) {
  c10::Dict<std::string, at::Tensor> weights;
  for (const auto& [name, tensor] : module_state_dict(model)) weights.insert(name, tensor);
  c10::impl::GenericDict optimizer_state(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [slot, tensors] : optimizer.state()) {
    c10::Dict<std::string, at::Tensor> slot_tensors;
    for (const auto& [name, tensor] : tensors) slot_tensors.insert(name, tensor);
    optimizer_state.insert(slot, slot_tensors);
  }
  c10::impl::GenericDict archive(c10::StringType::get(), c10::AnyType::get());
  archive.insert("iteration", static_cast<int64_t>(state.iteration));
  archive.insert("total_iterations", static_cast<int64_t>(state.total_iterations));
  archive.insert("best_score", state.best_score);
  archive.insert("loader_epoch", state.loader.epoch);
  archive.insert("loader_index", state.loader.index);
  archive.insert("torch_rng", at::detail::getDefaultCPUGenerator().get_state());
  archive.insert("model", weights);
  archive.insert("optimizer", optimizer_state);
  archive.insert("optimizer_kind", optimizer_kind);
  save_archive(path, archive);
}

TrainState load_train_state(const std::string& path, MaskRcnnImpl& model, Optimizer& optimizer,
                            const std::string& optimizer_kind) {
  const auto archive = read_archive(path).toGenericDict();
  auto get = [&](const char* key) {
    if (!archive.contains(key)) throw CheckpointError(path + ": training state lacks '" + std::string(key) + "'");
    return archive.at(key);
  };
  StateDict weights;
  for (const auto& entry : get("model").toGenericDict()) {
    weights.emplace_back(entry.key().toStringRef(), entry.value().toTensor());
  }
  load_state_dict(model, weights, path);
  // Another optimizer's state would be ignored without a word and the run would not continue.
  if (const std::string saved = get("optimizer_kind").toStringRef(); saved != optimizer_kind) {
    throw CheckpointError(path + ": written by a run with optim.optimizer " + saved + ", but the config says " +
                          optimizer_kind + "; resume with the optimizer the run started with");
  }
  Optimizer::State optimizer_state;
  for (const auto& slot : get("optimizer").toGenericDict()) {
    auto& tensors = optimizer_state[slot.key().toStringRef()];
    for (const auto& entry : slot.value().toGenericDict()) tensors[entry.key().toStringRef()] = entry.value().toTensor();
  }
  optimizer.set_state(std::move(optimizer_state));
  auto generator = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
  generator.set_state(get("torch_rng").toTensor());
  TrainState state;
  state.iteration = static_cast<int>(get("iteration").toInt());
  state.total_iterations = static_cast<int>(get("total_iterations").toInt());
  state.best_score = get("best_score").toDouble();
  state.loader.epoch = get("loader_epoch").toInt();
  state.loader.index = get("loader_index").toInt();
  return state;
}

// Training-mode graph (target sampling, loss heads) with batch-norm statistics left untouched.
void set_training_except_norm(MaskRcnnImpl& model) {
  model.train();
  for (const auto& module : model.modules(/*include_self=*/false)) {
    if (module->name().find("BatchNorm") != std::string::npos) module->eval();
  }
}

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

// Predicts every validation image, scores the results against the split's ground truth and
// averages the validation losses. Writes val_predictions.json and metrics.json.
ValidationRecord validate_model(MaskRcnnImpl& model, const TrainingData& data, int iteration,
                                const std::string& out_dir) {
  ValidationRecord record;
  record.iteration = iteration;
  std::vector<coco::Detection> detections;
  ResultsJsonWriter results_file;
  std::map<std::string, double> loss_sums;
  const data::Dataset& val = *data.val_set();
  {
    torch::NoGradGuard no_grad;
    for (int64_t i = 0; i < val.size(); ++i) {
      const data::Sample sample = val.get(i);
      model.eval();
      const Detections predicted = with_category_ids(model.predict({sample.image})[0], data.categories());
      auto converted = to_coco_detections(sample.image_id, predicted);
      detections.insert(detections.end(), converted.begin(), converted.end());
      results_file.add(sample.image_id, data.val_ground_truth().image(sample.image_id).file_name, predicted);
      // Validation losses use the training-mode graph (sampling, targets) without updating
      // anything: no gradients, and normalisation layers kept in eval mode.
      set_training_except_norm(model);
      for (const auto& [name, value] : model.losses({sample.image}, {sample.targets})) {
        loss_sums[name] += value.item<double>();
      }
    }
  }
  model.eval();
  for (const auto& [name, sum] : loss_sums) record.losses[name] = val.size() ? sum / val.size() : 0.0;

  // With no detections at all every AP and recall is 0 (undefined ones -1), as COCOeval scores it.
  const coco::Dataset& gt = data.val_ground_truth();
  const auto bbox = evaluation::evaluate(gt, detections, evaluation::IouType::kBbox);
  const auto segm = evaluation::evaluate(gt, detections, evaluation::IouType::kSegm);
  record.bbox_stats = bbox.stats;
  record.segm_stats = segm.stats;
  write_bytes_atomically((fs::path(out_dir) / "val_predictions.json").string(), results_file.dump());
  write_bytes_atomically((fs::path(out_dir) / "metrics.json").string(), evaluation::results_json({bbox, segm}) + "\n");
  return record;
}

}  // namespace

TrainOutcome train(const TrainConfig& config, const std::string& out_dir, bool resume) {
  config.validate();
  const auto start = std::chrono::steady_clock::now();
  torch::set_num_threads(config.run.threads > 0 ? config.run.threads
                                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));
  fs::create_directories(out_dir);
  const std::string state_path = (fs::path(out_dir) / kStateFile).string();
  if (resume && !fs::exists(state_path)) {
    throw CheckpointError(state_path + ": nothing to resume (no complete checkpoint in " + out_dir + ")");
  }

  const TrainingData data(config.data);
  const bool has_val = data.val_set() != nullptr && data.val_set()->size() > 0;
  if (has_val) write_coco_instances((fs::path(out_dir) / "val_annotations.json").string(), data.val_ground_truth());
  MaskRcnn model = build_mask_rcnn_for_training(config.model, data.num_classes());
  Optimizer optimizer(*model, optimizer_options(config.optim));
  TrainState state;
  if (resume) state = load_train_state(state_path, *model, optimizer, config.optim.optimizer);
  write_bytes_atomically((fs::path(out_dir) / "config.json").string(), config.to_json() + "\n");
  // Beside the weights, so predict names the classes and writes the data's category ids.
  write_bytes_atomically((fs::path(out_dir) / "categories.json").string(), data.categories().to_json());

  data::LoaderOptions loader_options;
  loader_options.batch_size = config.optim.batch_size;
  loader_options.hflip_prob = config.data.horizontal_flip ? 0.5 : 0.0;
  loader_options.seed = static_cast<uint64_t>(config.run.seed);
  data::DataLoader loader(data.train_set(), loader_options, state.loader);
  JsonLinesLog log((fs::path(out_dir) / "log.jsonl").string(), resume);
  TrainOutcome outcome;
  int images_since_log = 0;
  auto log_start = std::chrono::steady_clock::now();

  auto checkpoint = [&](int iteration) {
    state.iteration = iteration;
    state.loader = loader.position();
    save_state_dict((fs::path(out_dir) / "model_last.pth").string(), module_state_dict(*model));
    save_train_state(state_path, *model, optimizer, config.optim.optimizer, state);
  };
  auto run_validation = [&](int iteration) {
    ValidationRecord record = validate_model(*model, data, iteration, out_dir);
    json entry = {{"type", "val"}, {"iteration", iteration}, {"bbox", record.bbox_stats},
                  {"segm", record.segm_stats}, {"losses", record.losses},
                  {"bbox_AP", record.bbox_stats[0]}, {"segm_AP", record.segm_stats[0]}};
    log.write(entry);
    const double score = record.segm_stats[0];
    if (score > state.best_score) {
      state.best_score = score;
      save_state_dict((fs::path(out_dir) / "model_best.pth").string(), module_state_dict(*model));
    }
    outcome.validations.push_back(record);
  };

  // The schedule follows `optim`, whose length a time limit may shorten (see fit_to_time_limit).
  OptimConfig optim = config.optim;
  if (state.total_iterations > 0) optim.iterations = state.total_iterations;
  int iteration = state.iteration;
  const int first = iteration;
  auto stop_at = [&] {
    return config.run.stop_after > 0 ? std::min(optim.iterations, first + config.run.stop_after) : optim.iterations;
  };
  int last = stop_at();
  ProgressBar progress(optim.iterations, "train", "it");
  const auto loop_start = std::chrono::steady_clock::now();
  // With a time limit, the iteration count is fitted to the speed, so the learning-rate schedule
  // runs to its end inside the limit instead of being cut off mid-way. The first fit measures
  // iterations 10..30 of this invocation (the first ones pay for oneDNN's primitive creation and
  // first-touch memory); later fits every 50 iterations use the speed of the last 50, so that
  // a noisy first measurement neither wastes the limit's end nor overruns it, and the slow-down
  // as training finds more objects (more mask-head RoIs) is followed.
  constexpr int kCalibrationStart = 10, kCalibrationEnd = 30, kRefitEvery = 50;
  const bool fit_to_time = config.run.time_limit_minutes > 0 && state.total_iterations == 0;
  auto window_start = loop_start;
  double validation_reserve = 0.0;  // seconds kept for the final validation, once the speed is known
  auto fit_to_time_limit = [&](int done, int window_iterations) {
    const double per_iteration = seconds_since(window_start) / window_iterations;
    validation_reserve = has_val ? 2.0 * per_iteration * static_cast<double>(data.val_set()->size()) /
                                       config.optim.batch_size
                                 : 0.0;
    const double remaining = 60.0 * config.run.time_limit_minutes - seconds_since(start) - validation_reserve;
    const int fitted = std::min(config.optim.iterations,
                                done + std::max(0, static_cast<int>(0.98 * remaining / per_iteration)));
    if (fitted != optim.iterations) {
      optim.iterations = fitted;
      state.total_iterations = fitted;
      last = stop_at();
      progress.set_total(fitted);
    }
    window_start = std::chrono::steady_clock::now();
  };
  for (; iteration < last; ++iteration) {
    // Steps slow down as the RPN finds more objects (more mask-head RoIs), so the fit may run
    // long: stop anyway when only the validation's share of the limit is left.
    if (config.run.time_limit_minutes > 0 &&
        seconds_since(start) > 60.0 * config.run.time_limit_minutes - validation_reserve) {
      outcome.stopped_by_time_limit = true;
      break;
    }
    const data::Batch batch = loader.next();
    model->train();
    std::map<std::string, torch::Tensor> losses;
    {
      ops::Bf16AutocastScope autocast(config.optim.precision == "bf16");
      losses = model->losses(batch.images, batch.targets);
    }
    torch::Tensor total = torch::zeros({}, torch::kFloat);
    std::map<std::string, double> values;
    for (const auto& [name, value] : losses) {
      total = total + value;
      values[name] = value.item<double>();
    }
    const double total_value = total.item<double>();
    // Stop before a non-finite loss or gradient reaches the weights: the last checkpoint stays good.
    auto stop_non_finite = [&](const std::string& what) {
      std::string names;
      for (const int64_t index : batch.indices) {
        const std::string file = data.train_set()->get(index).file;
        names += (names.empty() ? "" : ", ") + (file.empty() ? "#" + std::to_string(index) : file);
      }
      throw TrainingError("non-finite " + what + " at iteration " + std::to_string(iteration + 1) +
                          " on images: " + names + " (" + format_losses(values) +
                          "); the last good checkpoint is kept in " + out_dir);
    };
    if (!std::isfinite(total_value)) stop_non_finite("loss (" + std::to_string(total_value) + ")");
    optimizer.zero_grad();
    total.backward();
    // The norm is one cheap pass; only a non-finite one needs the element-wise search for a name.
    const double grad_norm = optimizer.clip_grad_norm(config.optim.clip_grad_norm);
    if (!std::isfinite(grad_norm)) {
      const std::string bad = optimizer.first_non_finite_gradient();
      stop_non_finite(bad.empty() ? "gradient norm (overflow)" : "gradient in " + bad);
    }
    const double lr = learning_rate(optim, iteration);
    optimizer.step(lr);
    images_since_log += static_cast<int>(batch.images.size());

    const int done = iteration + 1;
    if (fit_to_time) {
      const int run = done - first;
      if (run == kCalibrationStart) window_start = std::chrono::steady_clock::now();
      if (run == kCalibrationEnd) fit_to_time_limit(done, kCalibrationEnd - kCalibrationStart);
      if (run > kCalibrationEnd && (run - kCalibrationEnd) % kRefitEvery == 0) fit_to_time_limit(done, kRefitEvery);
    }
    if (done % config.run.log_every == 0 || done == last) {
      const double rate = images_since_log / std::max(1e-9, seconds_since(log_start));
      json entry = {{"type", "train"}, {"iteration", done}, {"lr", lr}, {"loss", total_value}, {"grad_norm", grad_norm},
                    {"images_per_second", rate}, {"elapsed_seconds", seconds_since(start)}};
      for (const auto& [name, value] : values) entry[name] = value;
      log.write(entry);
      outcome.loss_history.emplace_back(done, total_value);
      images_since_log = 0;
      log_start = std::chrono::steady_clock::now();
    }
    if (config.run.progress) {
      char lr_text[32];
      std::snprintf(lr_text, sizeof lr_text, "lr %.2e", lr);
      progress.update(done, "loss " + std::to_string(total_value).substr(0, 5) + " (" + format_losses(values) + ") " + lr_text);
    }
    if (has_val && config.run.eval_every > 0 && done % config.run.eval_every == 0 && done < last) {
      run_validation(done);
    }
    if (done % config.run.checkpoint_every == 0 && done < last) checkpoint(done);
  }
  if (config.run.progress) progress.finish();
  // A run paused by stop_after is validated when it finishes, so that pausing changes nothing
  // (validation draws from the RNG that resume restores).
  const bool finished = iteration == optim.iterations || outcome.stopped_by_time_limit;
  if (has_val && finished) run_validation(iteration);
  checkpoint(iteration);
  outcome.iterations_done = iteration;
  outcome.seconds = seconds_since(start);
  return outcome;
}

}  // namespace instseg
