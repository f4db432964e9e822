#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>

#include "instseg/cli/commands.h"
#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"
#include "instseg/evaluation/coco_evaluator.h"
#include "instseg/evaluation/confusion.h"
#include "instseg/evaluation/report.h"
#include "instseg/io/plot.h"

namespace instseg::cli {

void register_eval(CLI::App& app) {
  struct Args {
    std::string gt, results, iou_type = "both", json_out, plots_dir;
    int threads = 0;
    bool per_class = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "Score COCO results against COCO ground truth (AP / AR as pycocotools)");
  cmd->add_option("--gt", args->gt, "COCO instances JSON (ground truth)")->required();
  cmd->add_option("--results", args->results, "COCO results JSON (list of detections)")->required();
  cmd->add_option("--iou-type", args->iou_type, "bbox, segm, or both (segm only when results have masks)")
      ->check(CLI::IsMember({"bbox", "segm", "both"}))
      ->capture_default_str();
  cmd->add_option("--json", args->json_out, "Write {\"bbox\": {\"stats\": [...], \"per_category\": {...}}, ...}");
  cmd->add_option("--threads", args->threads, "Worker threads (0 = all cores); results do not depend on it")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--plots", args->plots_dir, "Write precision-recall curves and a confusion matrix (PNG, CSV) here");
  cmd->add_flag("--per-class", args->per_class, "Also print AP50, AP75 and the GT count per category");
  cmd->footer(
      "Prints COCOeval.summarize()'s 12 lines and a per-category AP table for each IoU type; the "
      "numbers equal pycocotools 2.0 with default parameters. Results are checked first, each error "
      "naming the file, the result index and the field: an empty list, an unknown image id "
      "(pycocotools asserts) or category id (pycocotools silently drops those; here it is an error), "
      "a non-finite score (NaN is not JSON), a malformed compressed RLE or one sized unlike its "
      "image, a missing bbox when the first result has one. --iou-type segm needs masks.");
  cmd->callback([args] {
    const coco::Dataset gt = coco::Dataset::load(args->gt);
    // Masks stay compressed until the evaluator needs them (far less memory and time on dense
    // files); only the confusion matrix wants them decoded.
    const auto compressed = coco::CompressedResults::read(args->results, gt);
    const auto& detections = compressed.detections();
    bool has_masks = true;
    for (size_t i = 0; i < detections.size(); ++i) has_masks = has_masks && compressed.has_mask(i);
    std::vector<evaluation::IouType> types;
    if (args->iou_type != "segm") types.push_back(evaluation::IouType::kBbox);
    if (args->iou_type == "segm" && !has_masks) {
      throw InputError(args->results + ": --iou-type segm needs a \"segmentation\" in every result");
    }
    if (args->iou_type != "bbox" && has_masks) types.push_back(evaluation::IouType::kSegm);
    evaluation::EvalOptions options;
    options.num_threads = args->threads;
    std::vector<evaluation::EvalResult> results;
    for (const auto type : types) {
      results.push_back(evaluation::evaluate(gt, compressed, type, options));
      const auto& r = results.back();
      std::cout << "Evaluating " << to_string(type) << " (" << detections.size() << " results, "
                << gt.images().size() << " images)\n";
      for (const auto& line : evaluation::summary_lines(r)) std::cout << line << "\n";
      std::cout << "\n" << evaluation::category_table(r, args->per_class) << "\n";
      if (!args->plots_dir.empty()) {
        std::filesystem::create_directories(args->plots_dir);
        auto written = save_pr_curves(args->plots_dir, r);
        evaluation::ConfusionOptions confusion;
        confusion.num_threads = args->threads;
        const auto decoded = coco::read_results(args->results, gt);
        const auto more = save_confusion_matrix(
            args->plots_dir, evaluation::confusion_matrix(gt, decoded, type, confusion), to_string(type));
        std::cout << "wrote " << written.size() + more.size() << " plot files to " << args->plots_dir << "\n";
      }
    }
    if (!args->json_out.empty()) write_bytes_atomically(args->json_out, evaluation::results_json(results) + "\n");
  });
}

}  // namespace instseg::cli
