// The evaluator against pycocotools' numbers on every fixture of fixtures/coco_eval.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/errors.h"
#include "instseg/evaluation/coco_evaluator.h"
#include "support/reference.h"

namespace instseg::evaluation {
namespace {

using nlohmann::json;

std::string fixture(const std::string& name) { return testing::source_path("tests/fixtures/coco_eval/" + name); }

// Names the file when it is missing or not JSON (a bare parse error would not).
json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read fixture " + path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

const coco::Dataset& dataset(const std::string& relative) {
  static std::map<std::string, coco::Dataset> cache;
  auto it = cache.find(relative);
  if (it == cache.end()) it = cache.emplace(relative, coco::Dataset::load(fixture(relative))).first;
  return it->second;
}

void expect_matches(const EvalResult& r, const json& e, const std::string& what) {
  for (int i = 0; i < 12; ++i) EXPECT_NEAR(r.stats[i], e["stats"][i].get<double>(), 1e-9) << what << " stats[" << i << "]";
  EXPECT_EQ(summary_lines(r), e["summary_lines"].get<std::vector<std::string>>()) << what;
  const auto cat_ids = e["cat_ids"].get<std::vector<int64_t>>();
  ASSERT_EQ(r.category_ids, cat_ids) << what;
  ASSERT_EQ(e["per_category"].size(), cat_ids.size());
  for (size_t k = 0; k < cat_ids.size(); ++k) {
    EXPECT_NEAR(r.category_ap(int(k)), e["per_category"][std::to_string(cat_ids[k])].get<double>(), 1e-9)
        << what << " category " << cat_ids[k];
    for (int a = 0; a < kNumAreaRanges; ++a) {
      for (int m = 0; m < kNumMaxDets; ++m) {
        EXPECT_NEAR(r.mean_precision(-1, int(k), a, m), e["ap_by_cat_area_maxdet"][k][a][m].get<double>(), 1e-9)
            << what << " k=" << k << " a=" << a << " m=" << m;
        for (int t = 0; t < kNumIouThresholds; ++t) {
          EXPECT_NEAR(r.recall_at(t, int(k), a, m), e["recall"][t][k][a][m].get<double>(), 1e-9)
              << what << " recall t=" << t << " k=" << k << " a=" << a << " m=" << m;
        }
      }
    }
  }
}

class Fixture : public ::testing::TestWithParam<const char*> {};

TEST_P(Fixture, EqualsPycocotools) {
  const json expected = load_json(fixture(std::string(GetParam()) + ".expected.json"));
  const coco::Dataset& gt = dataset(expected["ground_truth"]);
  const auto detections = coco::read_results(fixture(expected["results"]), gt);
  ASSERT_EQ(detections.size(), expected["num_detections"].get<size_t>());
  // The same file with its masks left compressed until evaluated.
  const auto compressed = coco::CompressedResults::read(fixture(expected["results"]), gt);
  ASSERT_EQ(compressed.detections().size(), detections.size());
  int evaluated = 0;
  for (IouType type : {IouType::kBbox, IouType::kSegm}) {
    if (!expected.contains(to_string(type))) continue;
    ++evaluated;
    const EvalResult r = evaluate(gt, detections, type, {/*num_threads=*/2});
    expect_matches(r, expected[to_string(type)], std::string(GetParam()) + "/" + to_string(type));
    const EvalResult c = evaluate(gt, compressed, type, {/*num_threads=*/2});
    EXPECT_EQ(c.precision, r.precision) << GetParam();
    EXPECT_EQ(c.recall, r.recall) << GetParam();
    EXPECT_EQ(c.stats, r.stats) << GetParam();
  }
  EXPECT_GE(evaluated, 1);
}

INSTANTIATE_TEST_SUITE_P(CocoEval, Fixture,
                         ::testing::Values("public_bbox", "public_segm", "public_edge", "public_synth"));

TEST(CocoEval, ThresholdsAreNumpyLinspaceBits) {
  const json expected = load_json(fixture("public_bbox.expected.json"));
  for (int t = 0; t < kNumIouThresholds; ++t) EXPECT_EQ(iou_thresholds()[t], expected["iou_thresholds"][t].get<double>());
  for (int r = 0; r < kNumRecallPoints; ++r) EXPECT_EQ(recall_thresholds()[r], expected["recall_thresholds"][r].get<double>());
}

TEST(CocoEval, ResultsDoNotDependOnThreadCount) {
  const json expected = load_json(fixture("public_edge.expected.json"));
  const coco::Dataset& gt = dataset(expected["ground_truth"]);
  const auto detections = coco::read_results(fixture(expected["results"]), gt);
  const EvalResult one = evaluate(gt, detections, IouType::kSegm, {1});
  const EvalResult many = evaluate(gt, detections, IouType::kSegm, {7});
  EXPECT_EQ(one.precision, many.precision);
  EXPECT_EQ(one.recall, many.recall);
}

// In-memory API: perfect detections (the GT boxes themselves) give AP 1 where GT exists.
TEST(CocoEval, InMemoryPerfectDetectionsScoreOne) {
  const coco::Dataset& gt = dataset("gt/public_synth_gt.json");
  std::vector<coco::Detection> dets;
  for (const auto& a : gt.annotations()) {
    if (!a.iscrowd) dets.push_back({a.image_id, a.category_id, a.bbox, true, 0.9, std::nullopt});
  }
  const EvalResult r = evaluate(gt, dets, IouType::kBbox);
  EXPECT_DOUBLE_EQ(r.stats[1], 1.0);
  EXPECT_EQ(r.stats[5], -1.0);  // no large GT in this set
  // No detections at all: every category with GT has AP 0, the others -1.
  const EvalResult none = evaluate(gt, {}, IouType::kBbox);
  EXPECT_EQ(none.stats[0], 0.0);
  for (int k = 0; k < none.num_categories(); ++k) {
    EXPECT_EQ(none.category_ap(k), none.num_gt[k] > 0 ? 0.0 : -1.0) << k;
  }
}

TEST(CocoEval, BadDetectionsAreErrorsNamingIndexAndField) {
  const coco::Dataset& gt = dataset("gt/public_synth_gt.json");
  const auto message = [&](std::vector<coco::Detection> dets, IouType type) {
    try {
      evaluate(gt, dets, type);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  coco::Detection ok{10, 3, {1, 1, 5, 5}, true, 0.5, std::nullopt};
  auto bad_image = ok;
  bad_image.image_id = 11;
  EXPECT_THAT(message({ok, bad_image}, IouType::kBbox), ::testing::HasSubstr("detections[1].image_id"));
  auto bad_category = ok;
  bad_category.category_id = 1000;
  EXPECT_THAT(message({bad_category}, IouType::kBbox), ::testing::HasSubstr("detections[0].category_id"));
  auto nan_score = ok;
  nan_score.score = std::nan("");
  EXPECT_THAT(message({ok, ok, nan_score}, IouType::kBbox), ::testing::HasSubstr("detections[2].score"));
  auto wrong_size = ok;
  wrong_size.mask = coco::Rle{5, 5, {25}};
  EXPECT_THAT(message({wrong_size}, IouType::kSegm), ::testing::HasSubstr("detections[0].mask"));
}

}  // namespace
}  // namespace instseg::evaluation
