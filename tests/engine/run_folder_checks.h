#pragma once
// What a run folder promises, checked on a finished run: `predict` given the run folder rebuilds the
// model the trainer validated (config.json, model_last.pth), so over the validation images it writes
// the trainer's val_predictions.json entry for entry, and scoring those predictions gives the
// trainer's metrics.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/data/image_io.h"
#include "instseg/engine/predictor.h"
#include "instseg/engine/train_config.h"
#include "instseg/engine/training_data.h"
#include "instseg/evaluation/coco_evaluator.h"
#include "support/reference.h"

namespace instseg::testing {

// Results grouped by image id, each image's entries in the order written.
inline std::map<int64_t, std::vector<nlohmann::json>> results_by_image(const std::string& path) {
  std::map<int64_t, std::vector<nlohmann::json>> by_image;
  for (const auto& entry : nlohmann::json::parse(read_file_bytes(path))) {
    by_image[entry.at("image_id").get<int64_t>()].push_back(entry);
  }
  return by_image;
}

// `config` is the run's; `work` a scratch folder. Asserts through gtest.
inline void expect_predict_reproduces_validation(const std::string& run, const TrainConfig& config,
                                                 const std::string& work) {
  namespace fs = std::filesystem;
  const std::string annotations = run + "/val_annotations.json";
  const coco::Dataset gt = coco::Dataset::load(annotations);
  // The validation images as files predict reads (PNG: the generated pixels exactly), named as the
  // ground truth names them, so --coco-gt gives each its image id.
  const TrainingData data(config.data);
  const fs::path images = fs::path(work) / "val_images";
  fs::create_directories(images);
  std::map<int64_t, std::string> file_of;
  for (const auto& image : gt.images()) file_of[image.id] = image.file_name;
  ASSERT_EQ(static_cast<int64_t>(file_of.size()), data.val_set()->size());
  for (int64_t i = 0; i < data.val_set()->size(); ++i) {
    const auto sample = data.val_set()->get(i);
    data::write_image_png((images / file_of.at(sample.image_id)).string(), sample.image);
  }
  PredictOptions options;
  options.weights = run;  // the run folder: its config.json and model_last.pth
  options.inputs = {images.string()};
  options.out_dir = (fs::path(work) / "predicted").string();
  options.coco_gt = annotations;
  options.threads = config.run.threads;
  options.overlays = false;
  options.progress = false;
  const PredictSummary summary = run_predict(options);
  ASSERT_TRUE(summary.failures.empty());
  const std::string predicted = options.out_dir + "/predictions.json";

  const auto ours = results_by_image(predicted), validated = results_by_image(run + "/val_predictions.json");
  ASSERT_GT(validated.size(), 0u) << "the trained model detected nothing: nothing to compare";
  EXPECT_EQ(ours.size(), validated.size());
  size_t entries = 0;
  for (const auto& [image_id, expected] : validated) {
    const auto it = ours.find(image_id);
    ASSERT_NE(it, ours.end()) << "no predictions for validation image " << image_id;
    ASSERT_EQ(it->second.size(), expected.size()) << "image " << image_id;
    for (size_t k = 0; k < expected.size(); ++k) {
      // Same category, box, score and RLE, exactly (same model, same pixels, same code path).
      EXPECT_EQ(it->second[k], expected[k]) << "image " << image_id << ", detection " << k;
    }
    entries += expected.size();
  }
  EXPECT_EQ(summary.detections, static_cast<int>(entries));

  // Scoring predict's file gives the trainer's metrics.json, every statistic.
  const auto metrics = nlohmann::json::parse(read_file_bytes(run + "/metrics.json"));
  const auto results = coco::read_results(predicted, gt);
  for (const auto& [type, name] : {std::pair{evaluation::IouType::kBbox, "bbox"}, std::pair{evaluation::IouType::kSegm, "segm"}}) {
    const auto stats = evaluation::evaluate(gt, results, type).stats;
    const auto expected = metrics.at(name).at("stats");
    ASSERT_EQ(expected.size(), stats.size()) << name;
    for (size_t i = 0; i < stats.size(); ++i) EXPECT_EQ(stats[i], expected[i].get<double>()) << name << " stats[" << i << "]";
  }
}

}  // namespace instseg::testing
