// `instseg predict --profile`: the table on stdout and OUT/profile.json list every stage predict
// ran with the same numbers; the stage times sum to most of, and no more than, the model time; the
// arithmetic per image is the count of the images' own input sizes (engine/stage_flops.h, checked
// against torchvision's layers in tests/engine/stage_flops_test.cpp). And predict's computing
// options: --precision bf16 reaches the model (scores near, not equal to fp32's), --unfused with
// bf16, an unknown precision and --batch out of range are refused before anything runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_support.h"
#include "instseg/engine/stage_flops.h"
#include "support/reference.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::run_instseg;
using testing::TestDir;

std::string r18() { return testing::reference_dir("interop_cli") + "/r18.pth"; }
std::string coco_image(const std::string& file) { return testing::source_path("datasets/tiny_coco/val2017/" + file); }

// r18.pth at 320 px (as tests/cli/predict_command_test.cpp): the profile's bookkeeping does not
// depend on the depth or the size.
std::vector<std::string> predict_args(const std::vector<std::string>& images, const std::string& out,
                                      const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"predict", "--weights", r18(), "--out", out, "--min-size", "320", "--max-size",
                                   "512", "--threads", "2", "--no-overlays"};
  for (const auto& i : images) args.insert(args.end(), {"--input", i});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

json read_json(const std::string& path) { return json::parse(testing::read_file_bytes(path)); }

// The table's rows by stage: ms/image, share %, GFLOP/image, GFLOP/s, % peak ("-" read as 0).
std::map<std::string, std::vector<double>> table_rows(const std::string& stdout_text) {
  std::map<std::string, std::vector<double>> rows;
  std::istringstream lines(stdout_text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string stage, field;
    fields >> stage;
    std::vector<double> values;
    while (fields >> field) {
      if (field.back() == '%') field.pop_back();
      try {
        values.push_back(field == "-" ? 0.0 : std::stod(field));
      } catch (const std::exception&) {
        values.clear();
        break;
      }
    }
    if (values.size() == 5) rows[stage] = values;
  }
  return rows;
}

TEST(PredictProfile, TableAndJsonListEveryStageWithTimesWithinTheModelTime) {
  TestDir dir;
  const std::vector<std::string> files = {"000000037777.jpg", "000000087038.jpg"};
  std::vector<std::string> images;
  for (const auto& f : files) images.push_back(coco_image(f));
  const auto run = run_instseg(predict_args(images, dir / "out", {"--profile"}), dir / "streams");
  ASSERT_EQ(run.exit_code, 0) << run.err;

  const json profile = read_json(dir / "out/profile.json");
  EXPECT_EQ(profile["images"], 2);
  EXPECT_EQ(profile["precision"], "fp32");
  EXPECT_FALSE(profile["cpu"].get<std::string>().empty());
  const double peak = profile["conv_peak_gflops"].get<double>();
  EXPECT_GT(peak, 1.0);  // a 3x3 256-channel convolution runs at GFLOP/s on any machine this builds on

  // Every stage predict_box_masks times on the fused path, in the order they ran.
  std::vector<std::string> stages;
  for (const auto& s : profile["stages"]) stages.push_back(s["stage"].get<std::string>());
  EXPECT_EQ(stages, (std::vector<std::string>{"transform", "backbone.body", "backbone.fpn", "rpn.head",
                                              "rpn.proposals", "box.roi_align", "box.head", "box.postprocess",
                                              "mask.roi_align", "mask.head"}));

  // Stage timers run inside the model time, and leave out only the paster and the glue.
  const double model_ms = profile["model_ms_per_image"].get<double>();
  double sum_ms = 0.0, sum_share = 0.0;
  for (const auto& s : profile["stages"]) {
    sum_ms += s["ms_per_image"].get<double>();
    sum_share += s["share"].get<double>();
    EXPECT_GT(s["ms_per_image"].get<double>(), 0.0) << s["stage"];
  }
  EXPECT_LE(sum_ms, model_ms);
  EXPECT_GE(sum_ms, 0.8 * model_ms);
  EXPECT_NEAR(sum_share, sum_ms / model_ms, 1e-9);
  EXPECT_NEAR(profile["stages_ms_per_image"].get<double>(), sum_ms, 1e-9 * sum_ms);

  // The arithmetic: the ResNet-18 body's count at each image's padded input size, averaged; the
  // mask head's scales with the detections predictions.json holds (one entry per detection).
  MaskRcnnOptions options = MaskRcnnOptions::v1();
  options.transform.min_size = {320};
  options.transform.max_size = 512;
  double body = 0.0;
  for (const auto& f : images) {
    const cv::Mat m = cv::imread(f);
    const auto size = padded_input_size(options, m.rows, m.cols);
    body += resnet_body_flops(18, size[0], size[1]) / 1e9 / static_cast<double>(images.size());
  }
  std::map<std::string, json> by_stage;
  for (const auto& s : profile["stages"]) by_stage[s["stage"].get<std::string>()] = s;
  EXPECT_NEAR(by_stage["backbone.body"]["gflop_per_image"].get<double>(), body, 1e-9 * body);
  for (const char* stage : {"transform", "rpn.proposals", "box.roi_align", "box.postprocess", "mask.roi_align"}) {
    EXPECT_EQ(by_stage[stage]["gflop_per_image"].get<double>(), 0.0) << stage;
  }
  const size_t detections = read_json(dir / "out/predictions.json").size();
  ASSERT_GT(detections, 0u);
  // box.head at the proposals the RPN counted (StageProfile counts), not the upper bound.
  EXPECT_TRUE(profile["box_head_proposals_counted"].get<bool>());
  EXPECT_GT(profile["box_head_proposals_per_image"].get<double>(), 0.0);
  EXPECT_LE(profile["box_head_proposals_per_image"].get<double>(), 1000.0);
  for (const auto& [stage, s] : by_stage) {
    const double gflop = s["gflop_per_image"].get<double>(), ms = s["ms_per_image"].get<double>();
    EXPECT_NEAR(s["gflops"].get<double>(), gflop / (ms / 1e3), 1e-6 * (1 + gflop / (ms / 1e3))) << stage;
    EXPECT_NEAR(s["peak_share"].get<double>(), s["gflops"].get<double>() / peak, 1e-9) << stage;
  }

  // The table on stdout: the same rows, rounded as printed.
  const auto rows = table_rows(run.out);
  for (const auto& [stage, s] : by_stage) {
    ASSERT_TRUE(rows.count(stage)) << stage << " missing from\n" << run.out;
    const auto& r = rows.at(stage);
    EXPECT_NEAR(r[0], s["ms_per_image"].get<double>(), 0.051) << stage;
    EXPECT_NEAR(r[1], 100 * s["share"].get<double>(), 0.051) << stage;
    EXPECT_NEAR(r[2], s["gflop_per_image"].get<double>(), 0.0051) << stage;
    EXPECT_NEAR(r[3], s["gflops"].get<double>(), 0.051) << stage;
  }
  EXPECT_THAT(run.out, HasSubstr(profile["cpu"].get<std::string>()));
}

TEST(PredictProfile, Bf16ReachesTheModelAndIsNamedInTheSettingsAndProfile) {
  TestDir dir;
  const std::vector<std::string> images = {coco_image("000000037777.jpg")};
  const auto fp32 = run_instseg(predict_args(images, dir / "fp32", {}), dir / "fp32_streams");
  const auto bf16 = run_instseg(predict_args(images, dir / "bf16", {"--precision", "bf16", "--profile"}),
                                dir / "bf16_streams");
  ASSERT_EQ(fp32.exit_code, 0) << fp32.err;
  ASSERT_EQ(bf16.exit_code, 0) << bf16.err;
  EXPECT_THAT(fp32.err, HasSubstr("mask paste torchvision, fp32"));
  EXPECT_THAT(bf16.err, HasSubstr("mask paste torchvision, bf16"));
  EXPECT_EQ(read_json(dir / "bf16/profile.json")["precision"], "bf16");
  // The best detection: the same object, its score moved by bfloat16's rounding but not equal.
  const json a = read_json(dir / "fp32/predictions.json"), b = read_json(dir / "bf16/predictions.json");
  ASSERT_GT(a.size(), 0u);
  ASSERT_GT(b.size(), 0u);
  const double sa = a[0]["score"].get<double>(), sb = b[0]["score"].get<double>();
  EXPECT_NE(sa, sb) << "bf16 gave fp32's score exactly: --precision did not reach the model";
  EXPECT_NEAR(sa, sb, 0.05);
}

TEST(PredictProfile, ComputingOptionsOutOfRangeAreOneErrorBeforeAnythingRuns) {
  TestDir dir;
  const std::vector<std::string> images = {coco_image("000000037777.jpg")};
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> cases = {
      {{"--precision", "bf16", "--unfused"}, {"--unfused", "bf16"}},
      {{"--precision", "fp16"}, {"--precision", "fp16"}},
      {{"--batch", "0"}, {"--batch", "0"}},
      {{"--batch", "65"}, {"--batch", "65"}},
  };
  for (const auto& [extra, named] : cases) {
    const auto run = run_instseg(predict_args(images, dir / "out", extra), dir / "streams");
    testing::expect_one_error(run, named);
    EXPECT_FALSE(fs::exists(dir / "out")) << extra.front();
  }
}

}  // namespace
}  // namespace instseg
