// `instseg train` run as a program: configuration mistakes, a --resume without a state and a folder
// that already holds a run are one "error:" line naming the key or folder, exit code 1, before any
// training starts; --overwrite replaces a run's files and nothing else.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli_support.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::run_instseg;
using testing::TestDir;

void expect_one_error(const testing::ProgramResult& run, const std::vector<std::string>& named) {
  EXPECT_EQ(run.exit_code, 1);
  const auto lines = run.error_lines();
  ASSERT_EQ(lines.size(), 1u) << run.err;
  for (const auto& n : named) EXPECT_THAT(lines[0], HasSubstr(n));
}

TEST(TrainCommand, InvalidDepthNamesTheKeyAndCreatesNoRunFolder) {
  TestDir dir;
  const auto run = run_instseg({"train", "--set", "data.kind=synthetic", "--set", "model.depth=7", "--out", dir / "run"},
                               dir.str());
  expect_one_error(run, {"model.depth", "7"});
  EXPECT_FALSE(fs::exists(dir / "run"));
}

TEST(TrainCommand, UnknownSetKeyIsAnError) {
  TestDir dir;
  const auto run = run_instseg({"train", "--set", "data.kind=synthetic", "--set", "optim.learning_rate=0.1", "--out",
                                dir / "run"},
                               dir.str());
  expect_one_error(run, {"optim.learning_rate"});
  EXPECT_FALSE(fs::exists(dir / "run/config.json"));
}

TEST(TrainCommand, WrongTypeInSetNamesTheKey) {
  TestDir dir;
  const auto run = run_instseg({"train", "--set", "data.kind=synthetic", "--set", "optim.iterations=many", "--out",
                                dir / "run"},
                               dir.str());
  expect_one_error(run, {"optim.iterations", "many"});
}

TEST(TrainCommand, ConfigFileErrorsNameTheFileAndKey) {
  TestDir dir;
  const std::string config = dir / "my_config.json";
  std::ofstream(config) << R"({"data": {"kind": "synthetic"}, "optim": {"lrate": 0.1}})";
  const auto run = run_instseg({"train", "--config", config, "--out", dir / "run"}, dir.str());
  expect_one_error(run, {"my_config.json", "optim.lrate"});
}

TEST(TrainCommand, ResumeWithoutStateNamesTheFolder) {
  TestDir dir;
  const std::string out = dir / "never_trained";
  const auto run = run_instseg({"train", "--set", "data.kind=synthetic", "--resume", "--out", out}, dir.str());
  expect_one_error(run, {out, "resume"});
  EXPECT_FALSE(fs::exists(out + "/train_state.pth"));
  EXPECT_FALSE(fs::exists(out + "/config.json"));
}

TEST(TrainCommand, AFolderHoldingARunIsRefusedUntouchedNamingResumeAndOverwrite) {
  TestDir dir;
  const std::string run = dir / "finished";
  dir.write("finished/config.json", "{}");
  dir.write("finished/model_last.pth", "weights of a finished run");
  const auto result = run_instseg({"train", "--set", "data.kind=synthetic", "--out", run}, dir.str());
  expect_one_error(result, {run, "already holds a training run", "model_last.pth", "--resume", "--overwrite"});
  EXPECT_EQ(testing::read_file_bytes(run + "/model_last.pth"), "weights of a finished run");
  EXPECT_EQ(testing::read_file_bytes(run + "/config.json"), "{}");
  expect_one_error(run_instseg({"train", "--set", "data.kind=synthetic", "--resume", "--overwrite", "--out", run}, dir.str()),
                   {"--resume", "--overwrite"});
}

// One iteration of a tiny model on 4 generated images: --overwrite replaces the old run's files
// (a stale model_best.pth included) and keeps the user's own.
TEST(TrainCommand, OverwriteReplacesTheRunsFilesAndKeepsOthers) {
  TestDir dir;
  const std::string config = dir.write("tiny.json", R"({
    "data": {"kind": "synthetic", "synthetic_image_size": 64, "synthetic_train_images": 4, "synthetic_val_images": 0},
    "model": {"depth": 18, "norm": "batch", "trainable_layers": 5, "min_sizes": [64], "max_size": 64,
              "rpn_post_nms_top_n_train": 50, "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 32,
              "fpn_channels": 16, "box_representation_size": 32, "mask_head_channels": 16},
    "optim": {"iterations": 1, "batch_size": 1, "warmup_iterations": 0},
    "run": {"threads": 2, "progress": false}})");
  const std::string run = dir / "run";
  dir.write("run/model_best.pth", "best weights of the old run");
  dir.write("run/log.jsonl", "{\"type\": \"train\", \"iteration\": 900}\n");
  dir.write("run/notes.txt", "the user's");
  const auto result = run_instseg({"train", "--config", config, "--overwrite", "--out", run}, dir.str());
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_FALSE(fs::exists(run + "/model_best.pth"));
  EXPECT_EQ(testing::read_file_bytes(run + "/notes.txt"), "the user's");
  EXPECT_TRUE(fs::exists(run + "/model_last.pth"));
  EXPECT_THAT(testing::read_file_bytes(run + "/log.jsonl"), ::testing::Not(HasSubstr("900")));
  // The finished run is now protected in turn.
  expect_one_error(run_instseg({"train", "--config", config, "--out", run}, dir.str()), {run, "--overwrite"});
}

// apps/main.cpp's contract: every error is one "error: ..." line and exit code 1, command-line
// mistakes caught by CLI11 (a --config that does not exist, a missing --out) included.
TEST(TrainCommand, CommandLineMistakesAreOneErrorLineWithExitCodeOne) {
  TestDir dir;
  const std::string missing = dir / "missing_config.json";
  expect_one_error(run_instseg({"train", "--config", missing, "--out", dir / "run"}, dir.str()), {"missing_config.json"});
  expect_one_error(run_instseg({"train", "--set", "data.kind=synthetic"}, dir.str()), {"--out"});
}

}  // namespace
}  // namespace instseg
