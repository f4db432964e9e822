// train_state.pth: the checkpoint --resume continues from (train_loop.h).
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "instseg/checkpoint/load.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/errors.h"
#include "engine/train_loop.h"

namespace instseg::training {

namespace {

// The optimizer's state and TrainState's fields into `archive`: one description of them, for the
// file and for the copy rank 0 broadcasts on resume.
void insert_progress(c10::impl::GenericDict& archive, const Optimizer& optimizer, const TrainState& state) {
  c10::impl::GenericDict optimizer_state(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [slot, tensors] : optimizer.state()) {
    c10::Dict<std::string, at::Tensor> slot_tensors;
    for (const auto& [name, tensor] : tensors) slot_tensors.insert(name, tensor);
    optimizer_state.insert(slot, slot_tensors);
  }
  archive.insert("optimizer", optimizer_state);
  archive.insert("iteration", static_cast<int64_t>(state.iteration));
  archive.insert("total_iterations", static_cast<int64_t>(state.total_iterations));
  archive.insert("best_score", state.best_score);
  archive.insert("loader_epoch", state.loader.epoch);
  archive.insert("loader_index", state.loader.index);
  archive.insert("log_bytes", state.log_bytes);
  archive.insert("step_settings", state.step_settings);
}

// The reverse: sets the optimizer's state and returns the TrainState. `where` names the source.
TrainState read_progress(const c10::impl::GenericDict& archive, Optimizer& optimizer, const std::string& where) {
  auto get = [&](const char* key) {
    if (!archive.contains(key)) throw CheckpointError(where + ": training state lacks '" + std::string(key) + "'");
    return archive.at(key);
  };
  Optimizer::State optimizer_state;
  for (const auto& slot : get("optimizer").toGenericDict()) {
    auto& tensors = optimizer_state[slot.key().toStringRef()];
    for (const auto& entry : slot.value().toGenericDict()) tensors[entry.key().toStringRef()] = entry.value().toTensor();
  }
  optimizer.set_state(std::move(optimizer_state));
  TrainState state;
  state.iteration = static_cast<int>(get("iteration").toInt());
  state.total_iterations = static_cast<int>(get("total_iterations").toInt());
  state.best_score = get("best_score").toDouble();
  state.loader.epoch = get("loader_epoch").toInt();
  state.loader.index = get("loader_index").toInt();
  if (archive.contains("log_bytes")) state.log_bytes = archive.at("log_bytes").toInt();  // absent before 2026-12
  if (archive.contains("step_settings")) state.step_settings = archive.at("step_settings").toStringRef();
  return state;
}

}  // namespace

void save_train_state(const std::string& path, const MaskRcnnImpl& model, const Optimizer& optimizer,
                      const std::string& optimizer_kind, const TrainState& state) {
  c10::Dict<std::string, at::Tensor> weights;
  for (const auto& [name, tensor] : module_state_dict(model)) weights.insert(name, tensor);
  c10::impl::GenericDict archive(c10::StringType::get(), c10::AnyType::get());
  insert_progress(archive, optimizer, state);
  archive.insert("torch_rng", at::detail::getDefaultCPUGenerator().get_state());
  archive.insert("model", weights);
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
  const TrainState state = read_progress(archive, optimizer, path);
  auto generator = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
  generator.set_state(get("torch_rng").toTensor());
  return state;
}

std::string train_progress_bytes(const Optimizer& optimizer, const TrainState& state) {
  c10::impl::GenericDict archive(c10::StringType::get(), c10::AnyType::get());
  insert_progress(archive, optimizer, state);
  const std::vector<char> pickled = torch::pickle_save(archive);
  return std::string(pickled.begin(), pickled.end());
}

TrainState read_train_progress_bytes(const std::string& bytes, Optimizer& optimizer) {
  const auto archive = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end())).toGenericDict();
  return read_progress(archive, optimizer, "the training state rank 0 sent");
}

}  // namespace instseg::training
