#include "instseg/engine/trainer.h"

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
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
constexpr const char* kLastFile = "model_last.pth";
constexpr const char* kLogFile = "log.jsonl";

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Appends one JSON object per line and flushes, so a killed run keeps every record written, and
// counts its bytes: the checkpoint records how much of the log it covers.
class JsonLinesLog {
 public:
  // A fresh log, or (resume) the existing one cut back to `keep_bytes`, the length the checkpoint
  // recorded: the records after it (and a line half-written by a kill) are dropped, since the
  // resumed run writes them again. keep_bytes < 0 (a state written before log lengths were
  // recorded) or a log shorter than it (edited by hand) keeps the log as it is.
  JsonLinesLog(const std::string& path, bool resume, int64_t keep_bytes) : path_(path) {
    std::error_code ec;
    if (resume && fs::exists(path)) {
      const auto size = static_cast<int64_t>(fs::file_size(path, ec));
      if (!ec && keep_bytes >= 0 && size > keep_bytes) fs::resize_file(path, static_cast<uintmax_t>(keep_bytes), ec);
      if (ec) throw InputError(path + ": cannot cut the log back to the checkpoint: " + ec.message());
      bytes_ = static_cast<int64_t>(fs::file_size(path));
    }
    out_.open(path, std::ios::binary | (resume ? std::ios::app : std::ios::trunc));
    if (!out_) throw InputError(path + ": cannot open log for writing");
  }
  void write(const json& record) {
    const std::string line = record.dump() + "\n";
    out_ << line;
    out_.flush();
    if (!out_) throw InputError(path_ + ": write failed (disk full?)");
    bytes_ += static_cast<int64_t>(line.size());
  }
  int64_t bytes() const { return bytes_; }

 private:
  std::string path_;
  std::ofstream out_;
  int64_t bytes_ = 0;
};

// Everything --resume needs to continue exactly as if the run had not stopped.
struct TrainState {
  int iteration = 0;  // iterations completed
  int total_iterations = 0;  // the run's length once fitted to a time limit; 0 = optim.iterations
  double best_score = -1.0;
  data::LoaderPosition loader;
  int64_t log_bytes = -1;  // length of log.jsonl when the state was written; -1 = not recorded
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
  archive.insert("log_bytes", state.log_bytes);
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
  if (archive.contains("log_bytes")) state.log_bytes = archive.at("log_bytes").toInt();  // absent before 2026-12
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

// The first line of a LibTorch error, without its C++ backtrace.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

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
  auto probe = [&](const char* moment, int iteration) {
    if (run_options.probe) run_options.probe(moment, iteration);
  };
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
  const std::string last_path = (dir / kLastFile).string();
  if (resume && !fs::exists(state_path)) {
    throw CheckpointError(state_path + ": nothing to resume (no complete checkpoint in " + out_dir + ")");
  }
  torch::set_num_threads(config.run.threads > 0 ? config.run.threads
                                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  torch::manual_seed(static_cast<uint64_t>(config.run.seed));

  // Everything that can fail on the user's data, weights or state comes before the first write.
  const TrainingData data(config.data);
  check_batch_size(config, data);
  const bool has_val = data.val_set() != nullptr && data.val_set()->size() > 0;
  MaskRcnn model = build_mask_rcnn_for_training(config.model, data.num_classes());
  Optimizer optimizer(*model, optimizer_options(config.optim));
  TrainState state;
  if (resume) state = load_train_state(state_path, *model, optimizer, config.optim.optimizer);
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
  auto discard_fresh_run = [&] {
    try {
      remove_files(out_dir, run_file_names());
      if (created_dir && fs::is_empty(dir)) fs::remove(dir);
    } catch (...) {  // the failure being reported matters more than the leftovers
    }
  };
  TrainOutcome outcome;
  try {
    write_bytes_atomically((dir / "config.json").string(), config.to_json() + "\n");
    // Beside the weights, so predict names the classes and writes the data's category ids.
    write_bytes_atomically((dir / "categories.json").string(), data.categories().to_json());
    if (has_val) write_coco_instances((dir / "val_annotations.json").string(), data.val_ground_truth());
    JsonLinesLog log((dir / kLogFile).string(), resume, state.log_bytes);
    // A kill after a checkpoint's commit and before model_last.pth was replaced leaves the previous
    // checkpoint's weights there: publish the resumed set's own.
    if (resume) save_state_dict(last_path, module_state_dict(*model));
    int images_since_log = 0;
    auto log_start = std::chrono::steady_clock::now();

    // The commit is the rename of train_state.pth, which holds the whole set (weights, optimizer,
    // RNG, data and log positions); model_last.pth follows from the same weights.
    auto checkpoint = [&](int iteration) {
      state.iteration = iteration;
      state.loader = loader.position();
      state.log_bytes = log.bytes();
      save_train_state(state_path, *model, optimizer, config.optim.optimizer, state);
      committed = true;
      probe("state committed", iteration);
      save_state_dict(last_path, module_state_dict(*model));
      probe("model_last written", iteration);
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
        save_state_dict((dir / "model_best.pth").string(), module_state_dict(*model));
      }
      outcome.validations.push_back(record);
    };
    // The images of a batch by file (or dataset index), for messages about a failed step.
    auto batch_names = [&](const data::Batch& batch) {
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
    auto kept = [&] {
      return committed ? "; the last good checkpoint is kept in " + out_dir
                       : "; no checkpoint had been written, so the run's files were removed from " + out_dir;
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
      // An unreadable image is an InputError naming it (the loader names what it cannot load).
      const data::Batch batch = loader.next();
      std::map<std::string, double> values;
      double total_value = 0.0, grad_norm = 0.0;
      const double lr = learning_rate(optim, iteration);
      // Stop before a non-finite loss or gradient reaches the weights: the last checkpoint stays good.
      auto stop_non_finite = [&](const std::string& what) {
        throw TrainingError("non-finite " + what + " at iteration " + std::to_string(iteration + 1) +
                            " on images: " + batch_names(batch) + " (" + format_losses(values) + ")" + kept());
      };
      try {
        model->train();
        std::map<std::string, torch::Tensor> losses;
        {
          ops::Bf16AutocastScope autocast(config.optim.precision == "bf16");
          losses = model->losses(batch.images, batch.targets);
        }
        torch::Tensor total = torch::zeros({}, torch::kFloat);
        for (const auto& [name, value] : losses) {
          total = total + value;
          values[name] = value.item<double>();
        }
        total_value = total.item<double>();
        if (!std::isfinite(total_value)) stop_non_finite("loss (" + std::to_string(total_value) + ")");
        optimizer.zero_grad();
        total.backward();
        // The norm is one cheap pass; only a non-finite one needs the element-wise search for a name.
        grad_norm = optimizer.clip_grad_norm(config.optim.clip_grad_norm);
        if (!std::isfinite(grad_norm)) {
          const std::string bad = optimizer.first_non_finite_gradient();
          stop_non_finite(bad.empty() ? "gradient norm (overflow)" : "gradient in " + bad);
        }
        optimizer.step(lr);
      } catch (const std::bad_alloc&) {
        throw TrainingError("out of memory at iteration " + std::to_string(iteration + 1) + " on images: " +
                            batch_names(batch) + "; lower optim.batch_size (" + std::to_string(config.optim.batch_size) +
                            ") or model.max_size (" + std::to_string(config.model.max_size) + ")" + kept());
      } catch (const c10::Error& e) {
        throw TrainingError("iteration " + std::to_string(iteration + 1) + " failed on images: " + batch_names(batch) +
                            ": " + first_line(e.what_without_backtrace()) + kept());
      }
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
      probe("iteration", done);
    }
    if (config.run.progress) progress.finish();
    // A finished run's last checkpoint follows its final validation: resuming it (e.g. after a kill
    // before model_last.pth was replaced) has nothing left to do, and validating again would log twice.
    const bool nothing_left = resume && first >= last;
    // A run paused by stop_after is validated when it finishes, so that pausing changes nothing
    // (validation draws from the RNG that resume restores).
    const bool finished = iteration == optim.iterations || outcome.stopped_by_time_limit;
    if (has_val && finished && !nothing_left) run_validation(iteration);
    if (!nothing_left) checkpoint(iteration);
    outcome.iterations_done = iteration;
  } catch (...) {
    if (!committed) discard_fresh_run();
    throw;
  }
  outcome.seconds = seconds_since(start);
  return outcome;
}

}  // namespace instseg
