// run_explain's own decisions (include/instseg/explain/explain.h): which model, which labels.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "explain_fixture.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/engine/train_config.h"
#include "instseg/errors.h"
#include "instseg/explain/explain.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

struct Dir {
  fs::path path = fs::temp_directory_path() / ("instseg_explain_test_" + std::to_string(::getpid()));
  Dir() { fs::remove_all(path); }
  ~Dir() { fs::remove_all(path); }
};

// The fixture's file with sparse category ids (bar 3, disc 7), as COCO's are.
testing::TinyCoco sparse_ids(const fs::path& dir) {
  auto files = testing::write_tiny_coco(dir.string());
  json coco = json::parse(std::ifstream(files.annotations));
  coco["categories"] = {{{"id", 3}, {"name", "bar"}}, {{"id", 7}, {"name", "disc"}}};
  coco["annotations"][0]["category_id"] = 3;
  coco["annotations"][1]["category_id"] = 7;
  std::ofstream(files.annotations) << coco.dump();
  return files;
}

// A run folder of a small model with `num_classes`, and categories.json when `categories` is not
// empty (as training writes it).
std::string run_folder(const fs::path& dir, int num_classes, const std::string& categories) {
  fs::create_directories(dir);
  TrainConfig config;
  config.model.options = testing::small_model_options(num_classes);
  std::ofstream(dir / "config.json") << config.to_json();
  torch::manual_seed(3);
  MaskRcnn model(config.model.options);
  save_state_dict((dir / "model_last.pth").string(), module_state_dict(*model));
  if (!categories.empty()) std::ofstream(dir / "categories.json") << categories;
  return dir.string();
}

std::vector<int64_t> gt_labels(const fs::path& out) {
  const json input = json::parse(std::ifstream(out / "train" / "01_input.json"));
  std::vector<int64_t> labels;
  for (const auto& g : input.at("gt")) labels.push_back(g.at("label").get<int64_t>());
  return labels;
}

ExplainOptions options_for(const testing::TinyCoco& files, const fs::path& out) {
  ExplainOptions o;
  o.input = files.image;
  o.gt = files.annotations;
  o.out_dir = out.string();
  o.threads = 1;
  o.progress = false;
  return o;
}

// The ground truth is drawn and scored in the model's labels: a bare checkpoint's are category ids
// (torchvision's COCO models), a trained run's come from its categories.json; a category the
// model lacks is an error naming it.
TEST(RunExplain, GroundTruthLabelsAreTheModelsLabels) {
  Dir dir;
  const auto files = sparse_ids(dir.path / "data");

  auto bare = options_for(files, dir.path / "bare");
  bare.weights = run_folder(dir.path / "bare_run", 8, "");
  run_explain(bare);
  EXPECT_EQ(gt_labels(dir.path / "bare"), (std::vector<int64_t>{3, 7}));

  auto trained = options_for(files, dir.path / "trained");
  trained.weights = run_folder(dir.path / "trained_run", 3,
                               R"({"categories": [{"id": 3, "name": "bar"}, {"id": 7, "name": "disc"}]})");
  run_explain(trained);
  EXPECT_EQ(gt_labels(dir.path / "trained"), (std::vector<int64_t>{1, 2}));

  auto other = options_for(files, dir.path / "other");
  other.weights = run_folder(dir.path / "other_run", 3,
                             R"({"categories": [{"id": 7, "name": "disc"}, {"id": 9, "name": "cone"}]})");
  try {
    run_explain(other);
    ADD_FAILURE() << "a category the model lacks was accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("category id 3 (bar)"));
    EXPECT_THAT(e.what(), HasSubstr(files.annotations));
  }
  EXPECT_FALSE(fs::exists(dir.path / "other")) << "nothing is written before the inputs are checked";
}

// --config is the model a run would start from; with --weights the model is the checkpoint's.
TEST(RunExplain, ConfigDescribesTheStartingModelAndExcludesWeights) {
  Dir dir;
  const auto files = testing::write_tiny_coco((dir.path / "data").string());
  auto both = options_for(files, dir.path / "both");
  both.weights = "any.pth";
  both.config = "any.json";
  try {
    run_explain(both);
    ADD_FAILURE() << "--config with --weights was accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("--config"));
  }

  // A config's model section is the model explained: its min_size sizes the input.
  const fs::path config = dir.path / "config.json";
  std::ofstream(config) << R"({"model": {"backbone": {"depth": 18, "out_channels": 64, "norm": "group_norm"},
                                         "transform": {"min_size": [48], "max_size": 96}}})";
  auto from_config = options_for(files, dir.path / "from_config");
  from_config.config = config.string();
  run_explain(from_config);
  const json input = json::parse(std::ifstream(dir.path / "from_config" / "train" / "01_input.json"));
  EXPECT_EQ(input.at("resized_size"), json::parse(R"({"height": 48, "width": 64})"));
}

}  // namespace
}  // namespace instseg
