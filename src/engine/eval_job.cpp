#include "instseg/engine/eval_job.h"

#include <filesystem>
#include <optional>
#include <ostream>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"
#include "instseg/evaluation/report.h"
#include "instseg/io/plot.h"

namespace instseg {

void EvalJobOptions::validate() const {
  if (gt.empty()) throw ConfigError("eval: gt (the ground truth file) is required");
  if (results.empty()) throw ConfigError("eval: results (the results file) is required");
  if (iou_type != "bbox" && iou_type != "segm" && iou_type != "both") {
    throw ConfigError("eval: iou_type must be bbox, segm or both, got " + iou_type);
  }
  if (threads < 0) throw ConfigError("eval: threads must be >= 0, got " + std::to_string(threads));
}

namespace {

// The results with their masks decoded, for the confusion matrix, from the file as read once.
std::vector<coco::Detection> decoded(const coco::CompressedResults& compressed) {
  std::vector<coco::Detection> detections = compressed.detections();
  std::string text;
  for (size_t i = 0; i < detections.size(); ++i) {
    if (!compressed.has_mask(i)) continue;
    coco::Rle mask;
    compressed.decode_mask(i, mask, text);
    detections[i].mask = std::move(mask);
  }
  return detections;
}

}  // namespace

EvalJobOutcome run_eval_job(const EvalJobOptions& options, std::ostream& out) {
  options.validate();
  const coco::Dataset gt = coco::Dataset::load(options.gt);
  // Read once: masks stay compressed until the evaluator needs them (far less memory and time on
  // dense files); only the confusion matrix wants them decoded, and decodes them from this copy.
  const auto compressed = coco::CompressedResults::read(options.results, gt);
  const auto& detections = compressed.detections();
  bool has_masks = true;
  for (size_t i = 0; i < detections.size(); ++i) has_masks = has_masks && compressed.has_mask(i);
  if (options.iou_type == "segm" && !has_masks) {
    throw InputError(options.results + ": --iou-type segm needs a \"segmentation\" in every result");
  }
  std::vector<evaluation::IouType> types;
  if (options.iou_type != "segm") types.push_back(evaluation::IouType::kBbox);
  if (options.iou_type != "bbox" && has_masks) types.push_back(evaluation::IouType::kSegm);

  evaluation::EvalOptions eval_options;
  eval_options.num_threads = options.threads;
  evaluation::ConfusionOptions confusion_options;
  confusion_options.num_threads = options.threads;
  std::optional<std::vector<coco::Detection>> with_masks;  // decoded on the first segm plot
  EvalJobOutcome outcome;
  for (const auto type : types) {
    outcome.results.push_back(evaluation::evaluate(gt, compressed, type, eval_options));
    const auto& r = outcome.results.back();
    out << "Evaluating " << to_string(type) << " (" << detections.size() << " results, " << gt.images().size()
        << " images)\n";
    for (const auto& line : evaluation::summary_lines(r)) out << line << "\n";
    out << "\n" << evaluation::category_table(r, options.per_class) << "\n";
    if (options.plots_dir.empty()) continue;
    std::filesystem::create_directories(options.plots_dir);
    const auto curves = save_pr_curves(options.plots_dir, r);
    if (type == evaluation::IouType::kSegm && !with_masks) with_masks = decoded(compressed);
    outcome.confusion.push_back(evaluation::confusion_matrix(
        gt, type == evaluation::IouType::kSegm ? *with_masks : detections, type, confusion_options));
    const auto matrix = save_confusion_matrix(options.plots_dir, outcome.confusion.back(), to_string(type));
    out << "wrote " << curves.size() + matrix.size() << " plot files to " << options.plots_dir << "\n";
    outcome.plot_files.insert(outcome.plot_files.end(), curves.begin(), curves.end());
    outcome.plot_files.insert(outcome.plot_files.end(), matrix.begin(), matrix.end());
  }
  if (!options.json_out.empty()) {
    write_bytes_atomically(options.json_out, evaluation::results_json(outcome.results) + "\n");
  }
  return outcome;
}

}  // namespace instseg
