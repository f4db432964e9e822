// The embedding API (include/instseg/instseg.h) against the library's own commands and pycocotools:
// a cv::Mat predicted through instseg::Model gives predict's predictions.json byte for byte, masks
// decode and encode as pycocotools.mask, evaluate() gives COCOeval's numbers, and failures are the
// library's exceptions naming what was wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <set>
#include <utility>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "instseg/data/image_io.h"
#include "instseg/engine/predictor.h"
#include "instseg/instseg.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::TestDir;

std::string interop(const std::string& name) { return testing::reference_dir("interop_cli") + "/" + name; }
std::string coco_image(const std::string& file) { return testing::source_path("datasets/tiny_coco/val2017/" + file); }
std::string fixture(const std::string& name) { return testing::source_path("tests/fixtures/coco_eval/" + name); }

// r18.pth (tests/reference/interop_cli.py): a ResNet-18-FPN in torchvision's layout with narrow
// heads, at 320/512 px: what is checked here (the same detections by two routes) does not depend
// on the depth. One intra-op thread: with the cores shared (ctest -j, other builds) two OpenMP
// threads spin-wait for each other, 1.5 s -> 8.5 s for predict's two images here.
ModelOptions small_options() {
  ModelOptions o;
  o.min_size = 320;
  o.max_size = 512;
  o.threads = 1;
  return o;
}

// One model for the suite: loading is the slow part of each case.
const Model& r18() {
  static const Model model = Model::load(interop("r18.pth"), small_options());
  return model;
}

void expect_same(const std::vector<Detection>& got, const std::vector<Detection>& expected, const std::string& what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].category_id, expected[k].category_id) << what << " " << k;
    EXPECT_EQ(got[k].score, expected[k].score) << what << " " << k;
    EXPECT_EQ(got[k].box, expected[k].box) << what << " " << k;
    EXPECT_EQ(got[k].mask.counts, expected[k].mask.counts) << what << " " << k;
  }
}

TEST(EmbeddingApi, PredictOnMatGivesPredictsResultsFile) {
  // A colour JPEG and an 8-bit grayscale PNG (image_rgb_from_bgr's 1-channel path).
  const std::vector<std::string> images = {coco_image("000000037777.jpg"), interop("gray.png")};
  // Loaded first: its load sets the process's BLAS threads to the program's 1, which predict's
  // box-head products then also run with (ModelOptions::blas_threads).
  r18();
  TestDir dir;
  PredictOptions predict;
  predict.weights = interop("r18.pth");
  predict.inputs = images;
  predict.out_dir = dir / "out";
  predict.min_size = 320;
  predict.max_size = 512;
  predict.threads = 1;
  predict.overlays = false;
  predict.progress = false;
  run_predict(predict);
  const std::string expected = testing::read_file_bytes(dir / "out/predictions.json");

  std::vector<ImageDetections> from_mats;
  for (size_t i = 0; i < images.size(); ++i) {
    // IMREAD_UNCHANGED keeps the grayscale PNG one channel, as a product reading it would have it.
    const cv::Mat picture = cv::imread(images[i], cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(picture.empty()) << images[i];
    const std::string name = fs::path(images[i]).filename().string();
    // predict numbers the images 1, 2, ... in input order without --coco-gt.
    from_mats.push_back({static_cast<int64_t>(i + 1), name, r18().predict(picture)});
    EXPECT_FALSE(from_mats.back().detections.empty()) << name << ": nothing to compare";
  }
  EXPECT_EQ(to_coco_results_json(from_mats), expected);
  // The file route (predict's reader) and the tensor route (the reader's tensor) give the same.
  expect_same(r18().predict_file(images[1]), from_mats[1].detections, "predict_file");
  expect_same(r18().predict(data::read_image_rgb(images[0])), from_mats[0].detections, "tensor");

  // The typed fields are the file's entries: category names from the id, masks the RLE's.
  const json entries = json::parse(expected);
  size_t e = 0;
  for (const auto& image : from_mats) {
    for (const Detection& d : image.detections) {
      ASSERT_LT(e, entries.size());
      const json& entry = entries[e++];
      EXPECT_EQ(d.category_id, entry["category_id"].get<int64_t>());
      EXPECT_EQ(d.mask.counts, entry["segmentation"]["counts"].get<std::string>());
      EXPECT_EQ(d.mask.height, entry["segmentation"]["size"][0].get<int>());
      EXPECT_EQ(d.mask.width, entry["segmentation"]["size"][1].get<int>());
      EXPECT_FALSE(d.category_name.empty());
    }
  }
  EXPECT_EQ(e, entries.size());
}

TEST(EmbeddingApi, ModelInfoDescribesTheCheckpointAndOptions) {
  const ModelInfo info = r18().info();
  EXPECT_EQ(info.architecture, "maskrcnn_resnet18_fpn");  // interop_cli.py's resnet18 body, v1 heads
  EXPECT_EQ(info.backbone_depth, 18);
  EXPECT_EQ(info.num_classes, 91);  // torchvision's COCO layout: labels are COCO's ids
  ASSERT_EQ(info.category_ids.size(), 90u);
  ASSERT_EQ(info.category_names.size(), 90u);
  EXPECT_EQ(info.category_ids[0], 1);
  EXPECT_EQ(info.category_names[0], "person");
  EXPECT_EQ(info.category_ids[89], 90);
  EXPECT_EQ(info.category_names[89], "toothbrush");
  EXPECT_EQ(info.min_size, std::vector<int>{320});  // the options over torchvision's 800 / 1333
  EXPECT_EQ(info.max_size, 512);
  EXPECT_DOUBLE_EQ(info.score_thresh, 0.05);  // torchvision's inference defaults (no config.json)
  EXPECT_EQ(info.detections_per_image, 100);
  EXPECT_EQ(info.mask_paste, "torchvision");
  EXPECT_TRUE(info.config_file.empty());
  EXPECT_EQ(info.weights, interop("r18.pth"));
}

// pycocotools.mask's own outputs on hand-made masks (tests/fixtures/coco_eval/rle_cases.json).
TEST(RleMask, DecodesAndEncodesAsPycocotools) {
  const json cases = json::parse(testing::read_file_bytes(fixture("rle_cases.json")));
  int checked = 0;
  for (const auto& c : cases["encode"]) {
    const int h = c["h"].get<int>(), w = c["w"].get<int>();
    cv::Mat expected(h, w, CV_8UC1);
    for (int y = 0; y < h; ++y) {
      const std::string row = c["rows"][y].get<std::string>();
      for (int x = 0; x < w; ++x) expected.at<uint8_t>(y, x) = row[x] == '1' ? 1 : 0;
    }
    const RleMask rle{h, w, c["counts"].get<std::string>()};
    const cv::Mat decoded = rle.to_mat();
    ASSERT_EQ(decoded.type(), CV_8UC1) << c["name"];
    ASSERT_EQ(decoded.rows, h);
    ASSERT_EQ(decoded.cols, w);
    EXPECT_EQ(cv::countNonZero(cv::Mat(decoded != expected)), 0) << c["name"];
    EXPECT_EQ(rle.area(), c["area"].get<int64_t>()) << c["name"];
    EXPECT_EQ(RleMask::from_mat(cv::Mat(expected * 255)).counts, rle.counts) << c["name"];  // any non-zero is 1
    ++checked;
  }
  EXPECT_GT(checked, 3);
  // A column-major run past the first column: 3 zeros, 3 ones (column 1), 6 zeros of a 3 x 4 mask.
  const cv::Mat column = RleMask{3, 4, "336"}.to_mat();
  EXPECT_EQ(cv::countNonZero(column.col(1)), 3);
  EXPECT_EQ(cv::countNonZero(column), 3);
}

// io/mask_polygons.h's convention: vertices at the centres of the border pixels, one polygon per
// 8-connected part, parts without area left out.
TEST(RleMask, PolygonsTraceEachPartThroughItsBorderPixelCentres) {
  cv::Mat mask = cv::Mat::zeros(40, 50, CV_8UC1);
  mask(cv::Rect(10, 5, 20, 10)).setTo(1);  // columns 10..29, rows 5..14
  mask(cv::Rect(40, 30, 5, 6)).setTo(1);   // columns 40..44, rows 30..35
  mask.at<uint8_t>(2, 45) = 1;             // one pixel: no area as a polygon
  const auto polygons = RleMask::from_mat(mask).to_polygons();
  ASSERT_EQ(polygons.size(), 2u);
  std::set<std::set<std::pair<double, double>>> corners;
  for (const auto& p : polygons) {
    ASSERT_EQ(p.size(), 8u);  // a rectangle's 4 corners
    std::set<std::pair<double, double>> c;
    for (size_t i = 0; i + 1 < p.size(); i += 2) c.insert({p[i], p[i + 1]});
    corners.insert(c);
  }
  const std::set<std::set<std::pair<double, double>>> expected = {
      {{10.5, 5.5}, {29.5, 5.5}, {29.5, 14.5}, {10.5, 14.5}},
      {{40.5, 30.5}, {44.5, 30.5}, {44.5, 35.5}, {40.5, 35.5}}};
  EXPECT_EQ(corners, expected);
}

TEST(RleMask, MalformedCountsAreAnInputError) {
  try {
    RleMask{3, 4, "33"}.to_mat();  // runs sum to 6 of 12 pixels
    FAIL() << "no error";
  } catch (const InputError& e) {
    SUCCEED() << e.what();
  }
  EXPECT_THROW(RleMask::from_mat(cv::Mat(2, 2, CV_32FC1, cv::Scalar(1))), InputError);
}

// pycocotools' COCOeval on tiny_coco's ground truth (tests/fixtures/coco_eval/README.md).
TEST(EmbeddingApi, EvaluateGivesCocoEvalNumbers) {
  const json expected = json::parse(testing::read_file_bytes(fixture("public_segm.expected.json")));
  const Evaluation eval =
      evaluate(testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json"), fixture("public_segm.json"), 2);
  ASSERT_TRUE(eval.has_masks);
  for (int i = 0; i < 12; ++i) {
    EXPECT_NEAR(eval.box.stats[i], expected["bbox"]["stats"][i].get<double>(), 1e-12) << "bbox stats[" << i << "]";
    EXPECT_NEAR(eval.mask.stats[i], expected["segm"]["stats"][i].get<double>(), 1e-12) << "segm stats[" << i << "]";
  }
  EXPECT_EQ(eval.box.summary.size(), 12u);
  EXPECT_THAT(eval.mask.summary[0], HasSubstr("Average Precision"));
  EXPECT_DOUBLE_EQ(eval.mask.ap(), eval.mask.stats[0]);

  // Box-only results: no mask numbers.
  const Evaluation boxes =
      evaluate(testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json"), fixture("public_bbox.json"), 2);
  EXPECT_FALSE(boxes.has_masks);
  const json expected_boxes = json::parse(testing::read_file_bytes(fixture("public_bbox.expected.json")));
  EXPECT_NEAR(boxes.box.ap(), expected_boxes["bbox"]["stats"][0].get<double>(), 1e-12);
}

TEST(EmbeddingApi, FailuresAreTheLibrarysErrors) {
  try {
    Model::load("/nonexistent/model.pth");
    FAIL() << "no error";
  } catch (const CheckpointError& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/model.pth"));
  }
  try {
    Model::load(interop("truncated.pth"));
    FAIL() << "no error";
  } catch (const CheckpointError& e) {
    EXPECT_THAT(e.what(), HasSubstr("truncated.pth"));
  }
  ModelOptions bad;
  bad.score_thresh = 1.5;
  try {
    Model::load(interop("r18.pth"), bad);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("score_thresh"));
  }
  try {
    r18().predict_file("/nonexistent/picture.jpg");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/picture.jpg"));
  }
  EXPECT_THROW(r18().predict(cv::Mat()), InputError);
  EXPECT_THROW(r18().predict(torch::zeros({1, 8, 8})), InputError);  // not 3 channels
  EXPECT_THROW(r18().predict(torch::zeros({3, 8, 8}, torch::kDouble)), InputError);
  ModelOptions small = small_options();
  small.max_image_pixels = 1000;
  try {
    Model::load(interop("r18.pth"), small).predict(cv::Mat(40, 30, CV_8UC3, cv::Scalar(0)));
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("30 x 40 pixels is over the limit of 1000"));
  }
  EXPECT_THROW(r18().predict(cv::Mat(8, 8, CV_32FC3, cv::Scalar(0))), InputError);  // depth predict never reads
  try {
    evaluate(testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json"), "/nonexistent/results.json");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/results.json"));
  }
}

}  // namespace
}  // namespace instseg
