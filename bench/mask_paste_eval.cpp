// Mask accuracy of the two mask pastes (modeling/roi_heads/paste_masks.h) on the same weights: a
// run folder's model (load_model: its config.json and model_last.pth, as its validation ran it)
// predicts the run's validation split once per paste through inference_on_dataset, the loop the
// validation uses; the COCO evaluator scores both. Boxes are the same in both; only the masks move.
//
// usage: mask_paste_eval RUN_DIR [--threads T]      e.g. RUN_DIR = the demo's output folder
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "instseg/common/process_memory.h"
#include "instseg/engine/inference.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/training_data.h"
#include "instseg/evaluation/coco_evaluator.h"

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  instseg::keep_freed_memory_in_process();
  CLI::App app{"Mask AP of a trained run with torchvision's and the aligned mask paste"};
  std::string run_dir;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("run_dir", run_dir, "Folder written by instseg train/demo (config.json, model_last.pth)")->required();
  app.add_option("--threads", threads, "Intra-op threads")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads);

  const instseg::TrainConfig config = instseg::load_train_config((fs::path(run_dir) / "config.json").string());
  const instseg::TrainingData data(config.data);
  if (!data.val_set()) {
    std::fprintf(stderr, "%s/config.json names no validation split\n", run_dir.c_str());
    return 1;
  }
  std::printf("%s: %lld validation images\n%-12s %7s %7s %7s %7s %7s %7s\n", run_dir.c_str(),
              static_cast<long long>(data.val_set()->size()), "paste", "box AP", "mask AP", "AP50", "AP75", "APs",
              "APm");
  for (const std::string paste : {"torchvision", "aligned"}) {
    instseg::ModelOverrides overrides;
    overrides.mask_paste = instseg::mask_paste_named(paste, "paste");
    instseg::LoadedModel loaded = instseg::load_model(run_dir, overrides);
    const auto detections = instseg::inference_on_dataset(*loaded.model, *data.val_set(), data.val_ground_truth()).detections;
    using instseg::evaluation::IouType;
    const auto box = instseg::evaluation::evaluate(data.val_ground_truth(), detections, IouType::kBbox).stats;
    const auto mask = instseg::evaluation::evaluate(data.val_ground_truth(), detections, IouType::kSegm).stats;
    std::printf("%-12s %7.4f %7.4f %7.4f %7.4f %7.4f %7.4f\n", paste.c_str(), box[0], mask[0], mask[1], mask[2],
                mask[3], mask[4]);
  }
  return 0;
}
