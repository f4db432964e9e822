// The instseg program's contract for every command, run as a user would: --help exits 0, names
// the options and ends with examples; --version names instseg's, LibTorch's and OpenCV's versions
// and the CPU features; an unknown command is named; `eval` exits 0 with pycocotools' numbers, 1 on
// bad input or a usage mistake (one "error:" line); `demo` with the smallest budget writes its
// whole run folder.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core/version.hpp>
#include <regex>
#include <sstream>

#include "cli_support.h"
#include "instseg/ops/mixed_precision.h"
#include "support/reference.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::expect_one_error;
using testing::run_instseg;
using testing::TestDir;

std::string fixture(const std::string& name) { return testing::source_path("tests/fixtures/coco_eval/" + name); }

// Everything after "Examples:" (which follows every option's description): non-empty lines that
// are commands of the program (or their continuation lines, indented further).
std::vector<std::string> examples_at_the_end(const std::string& help, const std::vector<std::string>& options) {
  const size_t at = help.rfind("\nExamples:\n");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no Examples: section in\n" << help;
    return {};
  }
  for (const auto& option : options) EXPECT_LT(help.find(option), at) << option << " described after the examples";
  std::vector<std::string> commands;
  std::istringstream lines(help.substr(at + 11));
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    if (line.rfind("      ", 0) == 0) continue;  // a continuation of the example above
    EXPECT_EQ(line.rfind("  instseg ", 0), 0u) << "not an example: '" << line << "'";
    commands.push_back(line);
  }
  return commands;
}

// Help: exits 0, names every option, ends with examples of the command (the program's help with
// one of each); predict's says it takes a run folder, train's lists the model description's keys
// (config_keys: model.preset, model.backbone.*), not the old flat ones. One program run per help.
TEST(Program, HelpOfTheProgramAndEachCommandExitsZeroAndNamesTheOptions) {
  TestDir dir;
  const auto top = run_instseg({"--help"}, dir / "top");
  EXPECT_EQ(top.exit_code, 0) << top.err;
  for (const char* command : {"predict", "eval", "train", "demo", "explain"}) EXPECT_THAT(top.out, HasSubstr(command));
  const std::map<std::string, std::vector<std::string>> options = {
      {"predict", {"--weights", "--input", "--out", "--score-thresh", "--min-size", "--max-size", "--mask-paste",
                   "--threads", "--coco-gt", "--show-thresh", "--no-overlays", "--max-image-pixels"}},
      {"eval", {"--gt", "--results", "--iou-type", "--json", "--threads", "--plots", "--per-class"}},
      {"train", {"--config", "--set", "--resume", "--overwrite", "--out"}},
      {"demo", {"--out", "--minutes", "--threads", "--overlays", "--overwrite"}},
      {"explain", {"--input", "--out", "--weights", "--gt", "--min-size", "--max-size", "--seed", "--format",
                   "--threads"}}};
  std::map<std::string, std::string> helps;
  for (const auto& [command, names] : options) {
    const auto help = run_instseg({command, "--help"}, dir / command);
    EXPECT_EQ(help.exit_code, 0) << command << ": " << help.err;
    EXPECT_TRUE(help.error_lines().empty()) << help.err;
    for (const auto& name : names) EXPECT_THAT(help.out, HasSubstr(name)) << command;
    const auto examples = examples_at_the_end(help.out, names);
    const auto of_command = std::count_if(examples.begin(), examples.end(), [&, c = command](const std::string& e) {
      return e.rfind("  instseg " + c + " ", 0) == 0;
    });
    EXPECT_GE(of_command, 2) << command << " --help:\n" << help.out;
    helps[command] = help.out;
  }
  const auto examples = examples_at_the_end(top.out, {"--help", "--version", "predict", "demo"});
  for (const char* command : {"predict", "eval", "train", "demo", "explain"}) {
    EXPECT_TRUE(std::any_of(examples.begin(), examples.end(), [&](const std::string& e) {
      return e.rfind("  instseg " + std::string(command) + " ", 0) == 0;
    })) << "no example of " << command << " in --help";
  }
  EXPECT_THAT(helps["predict"], HasSubstr("a .pth checkpoint, or a run folder (its config.json and model_last.pth)"));
  for (const char* key : {"model.preset v1|v2", "model.backbone.depth 18|34|50|101",
                          "model.backbone.norm frozen_batch_norm|batch_norm|group_norm|none",
                          "model.roi_heads.detections_per_img", "model.transform.min_size",
                          "optim.precision fp32|bf16|auto", "optim.memory_format contiguous|channels_last|auto",
                          "--set model.backbone.depth=18"}) {
    EXPECT_THAT(helps["train"], HasSubstr(key));
  }
  EXPECT_THAT(helps["train"], ::testing::Not(HasSubstr("model.variant v1|v2")));
}

// --version: instseg's version, the LibTorch and OpenCV it was built with, and the CPU features as
// /proc/cpuinfo lists them; exit 0 with nothing on stderr.
TEST(Program, VersionNamesLibrariesAndCpuFeatures) {
  TestDir dir;
  const auto run = run_instseg({"--version"}, dir / "version");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_TRUE(std::regex_search(run.out, std::regex(R"(^instseg [0-9]+\.[0-9]+\.[0-9]+\n)"))) << run.out;
  EXPECT_THAT(run.out, HasSubstr("LibTorch " TORCH_VERSION " (CPU kernels: "));
  EXPECT_THAT(run.out, HasSubstr("\nOpenCV " CV_VERSION "\n"));
  std::string flags;
  std::istringstream cpuinfo(testing::read_file_bytes("/proc/cpuinfo"));
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  }
  ASSERT_FALSE(flags.empty()) << "no flags line in /proc/cpuinfo";
  auto has = [&](const char* flag) { return flags.find(" " + std::string(flag) + " ") != std::string::npos; };
  auto yes_no = [](bool b) { return std::string(b ? "yes" : "no"); };
  EXPECT_THAT(run.out, HasSubstr("AVX2 " + yes_no(has("avx2")) + ", AVX-512 " + yes_no(has("avx512f")) +
                                 ", AVX-512 BF16 " + yes_no(has("avx512_bf16")) + ", AMX " +
                                 yes_no(has("amx_tile") && has("amx_bf16"))));
  EXPECT_THAT(run.out, HasSubstr(ops::cpu_has_native_bf16() ? "bfloat16: native" : "bfloat16: emulated"));
  // After a command, --version is that command's option (there is none): an error, not the version.
  const std::string gt = fixture("gt/public_synth_gt.json");
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", gt, "--version"}, dir / "eval_version"),
                   {"--version"});
}

TEST(Program, NoCommandAnUnknownOneOrAnUnknownOptionIsOneErrorWithExitCodeOne) {
  TestDir dir;
  expect_one_error(run_instseg({}, dir / "none"), {"subcommand"});
  // An unknown command is named, with the commands there are.
  expect_one_error(run_instseg({"server"}, dir / "unknown"),
                   {"unknown command 'server' (commands: predict, eval, train, demo, explain, serve)"});
  expect_one_error(run_instseg({"segment", "--help"}, dir / "unknown_help"), {"unknown command 'segment'"});
  const std::string gt = fixture("gt/public_synth_gt.json");
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", gt, "--bogus"}, dir / "bogus"), {"--bogus"});
}

TEST(Program, EvalExitsZeroWithPycocotoolsNumbers) {
  TestDir dir;
  const json expected = json::parse(testing::read_file_bytes(fixture("public_synth.expected.json")));
  const auto run = run_instseg({"eval", "--gt", fixture(expected["ground_truth"]), "--results",
                                fixture(expected["results"]), "--json", dir / "eval.json", "--threads", "2"},
                               dir / "streams");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.error_lines().empty()) << run.err;
  for (const char* type : {"bbox", "segm"}) {
    for (const auto& line : expected[type]["summary_lines"]) EXPECT_THAT(run.out, HasSubstr(line.get<std::string>()));
  }
  const json written = json::parse(testing::read_file_bytes(dir / "eval.json"));
  for (const char* type : {"bbox", "segm"}) {
    for (int i = 0; i < 12; ++i) {
      EXPECT_NEAR(written[type]["stats"][i].get<double>(), expected[type]["stats"][i].get<double>(), 1e-9) << type << i;
    }
  }
}

TEST(Program, EvalOnBadInputOrUsageExitsOneWithOneErrorAndWritesNoJson) {
  TestDir dir;
  const std::string gt = fixture("gt/public_synth_gt.json"), bad = dir / "bad.json", out = dir / "eval.json";
  std::ofstream(bad) << R"([{"image_id": 10, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5},
                            {"image_id": 99, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}])";
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", bad, "--json", out}, dir / "s1"),
                   {"bad.json: results[1].image_id"});
  std::ofstream(bad) << R"([{"image_id": 10, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5})";  // cut short
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", bad, "--json", out}, dir / "s2"), {"bad.json"});
  std::ofstream(bad) << R"([{"image_id": 10, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}])";
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", bad, "--iou-type", "segm", "--json", out}, dir / "s3"),
                   {"--iou-type segm needs"});
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", dir / "absent.json", "--json", out}, dir / "s4"),
                   {"absent.json"});
  expect_one_error(run_instseg({"eval", "--gt", dir / "absent_gt.json", "--results", bad}, dir / "s5"),
                   {"absent_gt.json"});
  // Usage mistakes: caught by the command line parser, same contract.
  expect_one_error(run_instseg({"eval", "--gt", gt}, dir / "s6"), {"--results"});
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", bad, "--iou-type", "keypoints"}, dir / "s7"),
                   {"--iou-type", "keypoints"});
  expect_one_error(run_instseg({"eval", "--gt", gt, "--results", bad, "--threads", "-2"}, dir / "s8"), {"--threads"});
  EXPECT_FALSE(fs::exists(out)) << "a failed eval wrote its --json";
}

// The demo at its smallest budget (--minutes 0.5, the least it accepts): training to the time
// limit, the final validation, curves, overlays and the printed summary; its .pth files load in
// Python; the folder then holds a run, which a second demo refuses without --overwrite.
TEST(Program, DemoWithATinyBudgetWritesItsRunFolder) {
  TestDir dir;
  const std::string out = dir / "demo";
  const auto run = run_instseg({"demo", "--out", out, "--minutes", "0.5", "--threads", "2", "--overlays", "2"},
                               dir / "streams");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.error_lines().empty()) << run.err;
  for (const char* file : {"config.json", "categories.json", "log.jsonl", "model_last.pth", "model_best.pth",
                           "train_state.pth", "metrics.json", "val_predictions.json", "val_annotations.json",
                           "curves_loss.png", "curves_ap.png"}) {
    EXPECT_TRUE(fs::exists(out + "/" + file)) << file << " missing from the demo folder";
  }
  for (const char* png : {"curves_loss.png", "curves_ap.png"}) {
    const std::string bytes = testing::read_file_bytes(out + "/" + png);
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8)) << png;
    EXPECT_GT(bytes.size(), 1000u) << png;
  }
  int overlays = 0;
  for (const auto& entry : fs::directory_iterator(out + "/overlays")) {
    EXPECT_TRUE(std::regex_match(entry.path().filename().string(), std::regex(R"(val_[0-9]+\.png)")))
        << entry.path();
    ++overlays;
  }
  EXPECT_EQ(overlays, 2);  // --overlays 2

  // The iterations it printed are the ones it logged, and the AP it printed is metrics.json's.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(run.out, m, std::regex(R"(\n([0-9]+) iterations in ([0-9]+) s)"))) << run.out;
  const int iterations = std::stoi(m[1]);
  EXPECT_GE(iterations, 1);
  EXPECT_LE(std::stod(m[2]), 60.0) << "a 0.5 minute demo trained for " << m[2] << " s";
  int last_logged = 0, validations = 0;
  std::istringstream log(testing::read_file_bytes(out + "/log.jsonl"));
  for (std::string line; std::getline(log, line);) {
    const json entry = json::parse(line);
    if (entry["type"] == "train") last_logged = entry["iteration"].get<int>();
    if (entry["type"] == "val") {
      ++validations;
      EXPECT_EQ(entry["iteration"].get<int>(), iterations);
    }
  }
  EXPECT_LE(last_logged, iterations);
  EXPECT_EQ(validations, 1);  // the final validation only (eval_every 0)
  const json metrics = json::parse(testing::read_file_bytes(out + "/metrics.json"));
  for (const char* type : {"bbox", "segm"}) {
    ASSERT_EQ(metrics[type]["stats"].size(), 12u);
    const double ap = metrics[type]["stats"][0].get<double>();
    EXPECT_GE(ap, 0.0);
    EXPECT_LE(ap, 1.0);
  }
  char box_line[64];
  std::snprintf(box_line, sizeof box_line, "box    %7.3f", metrics["bbox"]["stats"][0].get<double>());
  EXPECT_THAT(run.out, HasSubstr(box_line));
  char mask_line[64];
  std::snprintf(mask_line, sizeof mask_line, "mask   %7.3f", metrics["segm"]["stats"][0].get<double>());
  EXPECT_THAT(run.out, HasSubstr(mask_line));
  const json config = json::parse(testing::read_file_bytes(out + "/config.json"));
  EXPECT_EQ(config["model"]["backbone"]["depth"], 18);
  EXPECT_EQ(config["model"]["mask_paste"], "aligned");
  EXPECT_EQ(json::parse(testing::read_file_bytes(out + "/val_annotations.json"))["images"].size(), 50u);
  const json predictions = json::parse(testing::read_file_bytes(out + "/val_predictions.json"));
  for (const auto& e : predictions) EXPECT_EQ(e["segmentation"]["size"], json::array({128, 128}));

  // Its checkpoints load with torch.load and strictly into torchvision (tests/reference/checkpoint_roundtrip.py).
  const auto python = testing::run_reference_python("checkpoint_roundtrip.py", {"run", out, std::to_string(iterations)},
                                                    dir / "python");
  EXPECT_EQ(python.exit_code, 0) << python.out << python.err;
  EXPECT_THAT(python.out, HasSubstr("OK run"));

  expect_one_error(run_instseg({"demo", "--out", out, "--minutes", "0.5"}, dir / "again"), {out, "--overwrite"});
  expect_one_error(run_instseg({"demo", "--out", dir / "other", "--minutes", "0.2"}, dir / "short"), {"--minutes"});
}

}  // namespace
}  // namespace instseg
