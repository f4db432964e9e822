// ResultsWriter / write_results: what they write, read_results reads back as the same detections;
// the optional "file_name" and the layout are those predict's files always had.
#include "instseg/coco/results_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/coco/rle.h"
#include "support/input_error.h"
#include "support/test_dir.h"

namespace instseg::coco {
namespace {

using ::testing::HasSubstr;

Dataset ground_truth() {
  return Dataset({{5, "a.jpg", 10, 8}, {2, "b.jpg", 4, 4}}, {{90, "cat"}, {3, "dog"}}, {}, "gt");
}

// Boxes and scores as a model gives them (float32 values, as doubles), a mask whose counts hold a
// backslash, an empty mask, a result without a mask.
std::vector<Detection> detections() {
  const Rle with_backslash{8, 10, {44, 36}};
  EXPECT_NE(to_string(with_backslash).find('\\'), std::string::npos);
  return {{5, 90, {double(1.3f), double(2.7f), double(30.25f), 4}, true, double(0.987654f), with_backslash},
          {5, 3, {0, 0, 1e-5, 2}, true, 0.0001, Rle{8, 10, {80}}},
          {2, 3, {0.5, 0.25, 1, 1}, true, 1.0, std::nullopt},
          {2, 90, {0, 0, 4, 4}, true, 0.05, Rle{4, 4, {0, 16}}}};
}

void expect_same_detections(const std::vector<Detection>& a, const std::vector<Detection>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("result " + std::to_string(i));
    EXPECT_EQ(a[i].image_id, b[i].image_id);
    EXPECT_EQ(a[i].category_id, b[i].category_id);
    EXPECT_EQ(a[i].has_bbox, b[i].has_bbox);
    EXPECT_EQ(a[i].bbox, b[i].bbox);
    EXPECT_EQ(a[i].score, b[i].score);
    ASSERT_EQ(bool(a[i].mask), bool(b[i].mask));
    if (!a[i].mask) continue;
    EXPECT_EQ(a[i].mask->h, b[i].mask->h);
    EXPECT_EQ(a[i].mask->w, b[i].mask->w);
    EXPECT_EQ(a[i].mask->counts, b[i].mask->counts);
  }
}

TEST(ResultsWriter, ReadResultsReadsBackEveryField) {
  const testing::TestDir dir;
  const Dataset gt = ground_truth();
  write_results(dir / "results.json", detections());
  expect_same_detections(detections(), read_results(dir / "results.json", gt));
  // With file names too (read_results skips the key), from two add() calls.
  ResultsWriter writer;
  const auto all = detections();
  writer.add({all.begin(), all.begin() + 2}, "a.jpg");
  writer.add({all.begin() + 2, all.end()}, "b.jpg");
  EXPECT_EQ(writer.size(), 4u);
  writer.write(dir / "named.json");
  expect_same_detections(all, read_results(dir / "named.json", gt));
}

TEST(ResultsWriter, MaskOnlyResultsHaveNoBox) {
  const testing::TestDir dir;
  std::vector<Detection> masks_only = detections();
  masks_only.erase(masks_only.begin() + 2);  // the one without a mask
  for (auto& d : masks_only) d.has_bbox = false;
  write_results(dir / "results.json", masks_only);
  EXPECT_EQ(testing::read_file_bytes(dir / "results.json").find("bbox"), std::string::npos);
  const auto back = read_results(dir / "results.json", ground_truth());
  ASSERT_EQ(back.size(), masks_only.size());
  for (size_t i = 0; i < back.size(); ++i) {
    EXPECT_FALSE(back[i].has_bbox) << i;
    EXPECT_EQ(back[i].mask->counts, masks_only[i].mask->counts) << i;
  }
}

// One entry per line between "[" and "]", each in nlohmann::json's compact layout (sorted keys),
// "file_name" beside the standard keys when given.
TEST(ResultsWriter, OneEntryPerLineWithTheFileName) {
  ResultsWriter writer;
  EXPECT_EQ(writer.dump(), "[]\n");
  const auto all = detections();
  writer.add({all[0]}, "caf\xC3\xA9.jpg");
  writer.add({all[2]});
  std::istringstream lines(writer.dump());
  std::string line;
  std::vector<std::string> got;
  while (std::getline(lines, line)) got.push_back(line);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], "[");
  EXPECT_EQ(got[3], "]");
  ASSERT_EQ(got[1].back(), ',');
  const auto first = nlohmann::json::parse(got[1].substr(0, got[1].size() - 1));
  const auto second = nlohmann::json::parse(got[2]);
  EXPECT_EQ(got[1], first.dump() + ",");
  EXPECT_EQ(got[2], second.dump());
  EXPECT_EQ(first["file_name"], "caf\xC3\xA9.jpg");
  EXPECT_EQ(first["segmentation"]["counts"], to_string(*all[0].mask));
  EXPECT_EQ(first["segmentation"]["size"], nlohmann::json({8, 10}));
  EXPECT_EQ(first["bbox"][0].get<double>(), all[0].bbox[0]);
  EXPECT_EQ(first.size(), 6u);
  EXPECT_FALSE(second.contains("file_name"));
  EXPECT_FALSE(second.contains("segmentation"));
  EXPECT_EQ(second.size(), 4u);
}

TEST(ResultsWriter, FileNamesThatAreNotUtf8AreErrors) {
  ResultsWriter writer;
  EXPECT_THAT(testing::input_error_of([&] { writer.add(detections(), "bad\xFF.jpg"); }),
              HasSubstr("file_name bad"));
  EXPECT_EQ(writer.size(), 0u);
}

}  // namespace
}  // namespace instseg::coco
