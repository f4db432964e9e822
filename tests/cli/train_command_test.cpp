// `instseg train` run as a program: configuration mistakes and a --resume without a state are one
// "error:" line naming the key or folder, exit code 1, before any training starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

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
