// Periodic validation (every run.eval_every iterations, and when the run finishes): COCO box and
// mask AP of the validation split's predictions (inference_on_dataset, as `predict` runs the model)
// and the mean validation losses; writes val_predictions.json and metrics.json, logs a val record
// and keeps the best mask AP's weights in model_best.pth.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "instseg/checkpoint/state_dict.h"
#include "instseg/common/atomic_file.h"
#include "instseg/engine/inference.h"
#include "instseg/evaluation/coco_evaluator.h"
#include "instseg/evaluation/report.h"
#include "engine/train_loop.h"

namespace instseg::training {

namespace {

namespace fs = std::filesystem;

// The mean of each loss term over the split: no gradients, nothing updated. Eval mode: batch norm
// uses its running statistics (the RPN keeps its training top-n: losses() is the training entry
// point). The losses sample each image's size, anchors and proposals at random: drawn from the
// global generator the training draws from, they would shift every later draw, so that
// run.eval_every would change the training. They draw from a generator of their own instead,
// seeded alike at every validation, so that validations compare on the same draws.
std::map<std::string, double> validation_losses(MaskRcnnImpl& model, const data::Dataset& val, uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  torch::NoGradGuard no_grad;
  model.eval();
  std::map<std::string, double> sums;
  for (int64_t i = 0; i < val.size(); ++i) {
    const data::Sample sample = val.get(i);
    for (const auto& [name, value] : model.losses({sample.image}, {sample.targets}, generator)) {
      sums[name] += value.item<double>();
    }
  }
  std::map<std::string, double> means;
  for (const auto& [name, sum] : sums) means[name] = val.size() ? sum / val.size() : 0.0;
  return means;
}

class ValidationHook : public HookBase {
 public:
  void after_step(TrainLoop& loop) override {
    const int done = loop.iteration;
    const int every = loop.config.run.eval_every;
    if (loop.has_validation() && every > 0 && done % every == 0 && done < loop.last) validate(loop);
  }

  // A run paused by run.stop_after is validated when it finishes, so that pausing changes nothing.
  void after_train(TrainLoop& loop) override {
    if (loop.has_validation() && loop.finished() && !loop.nothing_left()) validate(loop);
  }

 private:
  void validate(TrainLoop& loop) {
    const fs::path dir(loop.out_dir);
    ValidationRecord record;
    record.iteration = loop.iteration;
    const DatasetInference predicted = inference_on_dataset(loop.model, *loop.data.val_set(), loop.data.val_ground_truth());
    record.losses = validation_losses(loop.model, *loop.data.val_set(), static_cast<uint64_t>(loop.config.run.seed));
    // With no detections at all every AP and recall is 0 (undefined ones -1), as COCOeval scores it.
    const coco::Dataset& gt = loop.data.val_ground_truth();
    const auto bbox = evaluation::evaluate(gt, predicted.detections, evaluation::IouType::kBbox);
    const auto segm = evaluation::evaluate(gt, predicted.detections, evaluation::IouType::kSegm);
    record.bbox_stats = bbox.stats;
    record.segm_stats = segm.stats;
    write_bytes_atomically((dir / "val_predictions.json").string(), predicted.results_json);
    write_bytes_atomically((dir / "metrics.json").string(), evaluation::results_json({bbox, segm}) + "\n");

    const nlohmann::json entry = {{"type", "val"},         {"iteration", record.iteration},
                                  {"bbox", record.bbox_stats}, {"segm", record.segm_stats},
                                  {"losses", record.losses},   {"bbox_AP", record.bbox_stats[0]},
                                  {"segm_AP", record.segm_stats[0]}};
    loop.log.write(entry.dump());
    const double score = record.segm_stats[0];
    if (score > loop.state.best_score) {
      loop.state.best_score = score;
      save_state_dict((dir / "model_best.pth").string(), module_state_dict(loop.model));
    }
    loop.outcome.validations.push_back(record);
  }
};

}  // namespace

std::unique_ptr<HookBase> validation_hook() { return std::make_unique<ValidationHook>(); }

}  // namespace instseg::training
