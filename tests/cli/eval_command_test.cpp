// `instseg eval` end to end on a fixture: printed summary equals pycocotools' text, --json numbers
// equal its stats, --plots writes the pictures, and bad results are InputErrors naming the entry.
#include <CLI/CLI.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "instseg/cli/commands.h"
#include "instseg/errors.h"
#include "support/reference.h"

namespace instseg::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return testing::source_path("tests/fixtures/coco_eval/" + name); }

// Runs `instseg eval ARGS` and returns what it printed.
std::string run_eval(std::vector<std::string> args) {
  CLI::App app;
  register_eval(app);
  args.insert(args.begin(), "eval");
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments reversed
  ::testing::internal::CaptureStdout();
  try {
    app.parse(args);
  } catch (...) {
    ::testing::internal::GetCapturedStdout();
    throw;
  }
  return ::testing::internal::GetCapturedStdout();
}

TEST(EvalCommand, PrintsPycocotoolsSummaryAndWritesJsonAndPlots) {
  const json expected = json::parse(std::ifstream(fixture("public_synth.expected.json")));
  const fs::path dir = fs::path(::testing::TempDir()) / "instseg_eval_command";
  fs::remove_all(dir);
  const std::string out_json = (dir / "eval.json").string();
  fs::create_directories(dir);
  const std::string printed = run_eval({"--gt", fixture(expected["ground_truth"]), "--results", fixture(expected["results"]),
                                        "--json", out_json, "--plots", (dir / "plots").string(), "--per-class", "--threads", "2"});
  for (const char* type : {"bbox", "segm"}) {
    for (const auto& line : expected[type]["summary_lines"]) EXPECT_THAT(printed, ::testing::HasSubstr(line.get<std::string>()));
  }
  EXPECT_THAT(printed, ::testing::HasSubstr("AP50"));
  const json written = json::parse(std::ifstream(out_json));
  for (const char* type : {"bbox", "segm"}) {
    for (int i = 0; i < 12; ++i) EXPECT_NEAR(written[type]["stats"][i].get<double>(), expected[type]["stats"][i].get<double>(), 1e-9);
    EXPECT_EQ(written[type]["per_category"].size(), expected[type]["per_category"].size());
    for (const auto& [id, ap] : expected[type]["per_category"].items()) EXPECT_NEAR(written[type]["per_category"][id].get<double>(), ap.get<double>(), 1e-9);
    EXPECT_TRUE(fs::file_size(dir / "plots" / ("pr_" + std::string(type) + "_iou50.png")) > 1000);
    EXPECT_TRUE(fs::exists(dir / "plots" / ("confusion_" + std::string(type) + ".csv")));
  }
  fs::remove_all(dir);
}

TEST(EvalCommand, BadResultsAreInputErrors) {
  const fs::path dir = fs::path(::testing::TempDir()) / "instseg_eval_command_bad";
  fs::create_directories(dir);
  const std::string gt = fixture("gt/public_synth_gt.json"), bad = (dir / "bad.json").string();
  std::ofstream(bad) << R"([{"image_id": 10, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5},
                            {"image_id": 99, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}])";
  EXPECT_THAT([&] { run_eval({"--gt", gt, "--results", bad}); },
              ::testing::ThrowsMessage<InputError>(::testing::HasSubstr("bad.json: results[1].image_id")));
  std::ofstream(bad) << "[]";
  EXPECT_THAT([&] { run_eval({"--gt", gt, "--results", bad}); },
              ::testing::ThrowsMessage<InputError>(::testing::HasSubstr("the results list is empty")));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace instseg::cli
