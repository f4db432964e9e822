// `instseg serve --precision` reaches the model: a bf16 server's answers differ from an fp32
// server's (bfloat16 rounds differently) while finding the same objects, and an unknown name is
// refused at start naming the option. r18.pth at 160 / 256 px, as server_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_support.h"
#include "serve/server_process.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::ServerProcess;

std::string weights() { return testing::reference_dir("interop_cli") + "/r18.pth"; }

std::vector<std::string> server_args(const std::string& precision) {
  return {"--weights", weights(), "--min-size", "160", "--max-size", "256", "--threads", "1", "--precision", precision};
}

// The answer's results for one picture (the JPEG's own bytes); `precision` is what GET /v1/model
// must report.
json results_of(const ServerProcess& server, const std::string& bytes, const std::string& precision) {
  const auto model = server.client()->Get("/v1/model");
  EXPECT_TRUE(model && model->status == 200);
  if (model) EXPECT_EQ(json::parse(model->body)["precision"], precision);
  const auto res = server.client()->Post("/v1/predict?mask_format=none", bytes, "image/jpeg");
  if (!res || res->status != 200) {
    ADD_FAILURE() << "no answer: " << (res ? res->body : "connection failed");
    return json::array();
  }
  return json::parse(res->body)["results"];
}

// IoU of two [x, y, width, height] boxes.
double box_iou(const json& a, const json& b) {
  const double ax = a[0], ay = a[1], aw = a[2], ah = a[3], bx = b[0], by = b[1], bw = b[2], bh = b[3];
  const double w = std::min(ax + aw, bx + bw) - std::max(ax, bx), h = std::min(ay + ah, by + bh) - std::max(ay, by);
  const double inter = std::max(0.0, w) * std::max(0.0, h);
  return inter / (aw * ah + bw * bh - inter);
}

TEST(ServePrecision, Bf16ServerAnswersDifferSlightlyAndFindTheSameObjects) {
  testing::TestDir dir;
  const std::string bytes =
      testing::read_file_bytes(testing::source_path("datasets/tiny_coco/val2017/000000037777.jpg"));
  json a, b;
  {
    ServerProcess fp32(server_args("fp32"), dir / "fp32_stderr.txt");
    a = results_of(fp32, bytes, "fp32");
  }
  {
    ServerProcess bf16(server_args("bf16"), dir / "bf16_stderr.txt");
    b = results_of(bf16, bytes, "bf16");
  }
  ASSERT_GE(a.size(), 10u);
  ASSERT_FALSE(b.empty());
  // (Compared as text, reported in a line: the answers are ~100 results each.)
  EXPECT_TRUE(a.dump() != b.dump()) << "bf16 answered fp32's numbers: --precision did not reach the model";

  // Most of fp32's top detections have a bf16 one of their category at box IoU >= 0.9 (greedy in
  // fp32's score order), with a score close to their own.
  const size_t top = 10;
  std::vector<bool> taken(b.size(), false);
  size_t matched = 0;
  double max_score_diff = 0;
  for (size_t i = 0; i < top; ++i) {
    int best = -1;
    double best_iou = 0.9;
    for (size_t j = 0; j < b.size(); ++j) {
      if (taken[j] || b[j]["category_id"] != a[i]["category_id"]) continue;
      const double iou = box_iou(a[i]["bbox"], b[j]["bbox"]);
      if (iou >= best_iou) {
        best_iou = iou;
        best = static_cast<int>(j);
      }
    }
    if (best < 0) continue;
    taken[best] = true;
    ++matched;
    max_score_diff = std::max(max_score_diff, std::abs(a[i]["score"].get<double>() - b[best]["score"].get<double>()));
  }
  // r18 is random-init: its top detections are near-duplicate boxes of one class within ~0.01 of
  // each other's scores, so bf16's rounding moves some past NMS or the top 10 (7 of 10 matched on
  // this picture at 320 px); a broken bf16 path (wrong weights, layout or scale) matches none.
  EXPECT_GE(matched, 6u) << "of fp32's top " << top;
  EXPECT_LT(max_score_diff, 0.02);
}

TEST(ServePrecision, UnknownNameIsRefusedAtStartNamingTheOption) {
  testing::TestDir dir;
  const auto run = testing::run_instseg({"serve", "--weights", weights(), "--port", "0", "--precision", "int4"},
                                        dir.str());
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("--precision"));
  EXPECT_THAT(run.err, HasSubstr("int4"));
}

}  // namespace
}  // namespace instseg
