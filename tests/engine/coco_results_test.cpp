// COCO results from per-box masks (predict's path: pasted, binarised and encoded one at a time)
// are the results of the whole [K, 1, H, W] paste, RLE for RLE; and both equal the COCO results
// of torchvision's postprocessed outputs as pycocotools would encode them (tests/reference/coco_rle.py).
#include "instseg/engine/coco_results.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "instseg/coco/results_writer.h"
#include "instseg/coco/rle.h"
#include "instseg/modeling/roi_heads/paste_masks.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg {
namespace {

Detections random_detections(int64_t count, int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  Detections d;
  // Boxes anywhere from partly outside the image to wholly outside it, and a whole-image one.
  const auto xy = torch::rand({count, 2}) * torch::tensor({w * 1.4f, h * 1.4f}) - torch::tensor({w * 0.2f, h * 0.2f});
  const auto size = torch::rand({count, 2}) * torch::tensor({w * 0.7f, h * 0.7f});
  d.boxes = torch::cat({xy, xy + size}, 1);
  if (count > 0) d.boxes[0] = torch::tensor({0.f, 0.f, float(w), float(h)});
  d.scores = std::get<0>(torch::rand({count}).sort(0, /*descending=*/true));
  d.labels = torch::randint(1, 5, {count}, torch::kLong);
  d.masks = torch::rand({count, 1, 28, 28});  // probabilities around the 0.5 threshold
  return d;
}

void expect_same_results(const std::vector<coco::Detection>& a, const std::vector<coco::Detection>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("detection " + std::to_string(i));
    EXPECT_EQ(a[i].image_id, b[i].image_id);
    EXPECT_EQ(a[i].category_id, b[i].category_id);
    EXPECT_EQ(a[i].bbox, b[i].bbox);
    EXPECT_EQ(a[i].score, b[i].score);
    ASSERT_TRUE(a[i].mask && b[i].mask);
    EXPECT_EQ(a[i].mask->h, b[i].mask->h);
    EXPECT_EQ(a[i].mask->w, b[i].mask->w);
    EXPECT_EQ(a[i].mask->counts, b[i].mask->counts);
  }
}

TEST(ResultsJson, PerBoxMasksEncodeAsTheWholePaste) {
  for (const auto paste : {MaskPaste::kTorchvision, MaskPaste::kAligned}) {
    for (const auto [h, w] : {std::pair<int64_t, int64_t>{61, 83}, {1, 40}, {40, 1}}) {
      SCOPED_TRACE(std::to_string(h) + " x " + std::to_string(w));
      const Detections box_masks = random_detections(30, h, w, /*seed=*/static_cast<uint64_t>(h * 1000 + w));
      Detections pasted = box_masks;
      pasted.masks = paste == MaskPaste::kAligned ? paste_masks_aligned(box_masks.masks, box_masks.boxes, h, w)
                                                  : paste_masks_in_image(box_masks.masks, box_masks.boxes, h, w);
      const MaskPaster paster(box_masks.masks, box_masks.boxes, h, w, paste);
      expect_same_results(to_coco_detections(7, pasted), to_coco_detections(7, box_masks, paster));
      // And the JSON text built from either.
      coco::ResultsWriter whole, per_box;
      whole.add(to_coco_detections(7, pasted), "x.jpg");
      per_box.add(to_coco_detections(7, box_masks, paster), "x.jpg");
      EXPECT_EQ(whole.dump(), per_box.dump());
    }
  }
}

TEST(ResultsJson, NoDetectionsGiveNoResults) {
  const Detections none = random_detections(0, 10, 12, 1);
  const MaskPaster paster(none.masks, none.boxes, 10, 12, MaskPaste::kTorchvision);
  EXPECT_TRUE(to_coco_detections(1, none, paster).empty());
}

// coco_rle.py's encoder reproduces pycocotools on the 1254 encodings of
// tests/fixtures/coco_eval/rle_cases.json before it writes these cases (the script fails otherwise).
// The cases: torchvision's GeneralizedRCNNTransform.postprocess of 7 detections on a 37 x 53 image
// (boxes scaled back from 74 x 106, masks pasted): one covering the image (every border), two cut
// by the borders, one with all probabilities below 0.5 (empty), one smaller than a pixel, and one
// with pixels set to exactly 0.5 (background: mask > 0.5) and to the next float up (foreground).
struct TorchvisionCase {
  Detections pasted;     // masks [K, 1, H, W] as postprocess returned them, plus the 0.5 pixels
  Detections box_masks;  // the same detections with their 28 x 28 masks, for the per-box path
  int64_t height = 0, width = 0;
  nlohmann::json expected, expected_pasted;  // COCO results of each, encoded by coco_rle.py
};

TorchvisionCase torchvision_case() {
  const std::string dir = testing::reference_dir("coco_rle");
  const auto t = testing::load_tensors(dir + "/detections.pt");
  const auto expected = nlohmann::json::parse(testing::read_file_bytes(dir + "/expected.json"));
  TorchvisionCase c;
  c.pasted.boxes = t.at("boxes");
  c.pasted.scores = t.at("scores");
  c.pasted.labels = t.at("labels");
  c.pasted.masks = t.at("masks");
  c.box_masks = c.pasted;
  c.box_masks.masks = t.at("box_masks");
  c.height = expected.at("height").get<int64_t>();
  c.width = expected.at("width").get<int64_t>();
  c.expected = expected.at("results");
  c.expected_pasted = expected.at("results_pasted");
  return c;
}

// Field by field and exactly: the boxes are the same float32 values, so their doubles and
// differences are too; the RLE strings are bytes.
void expect_results_equal(const std::vector<coco::Detection>& ours, const nlohmann::json& expected) {
  ASSERT_EQ(ours.size(), expected.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    SCOPED_TRACE("detection " + std::to_string(i));
    const auto& e = expected[i];
    EXPECT_EQ(ours[i].image_id, e.at("image_id").get<int64_t>());
    EXPECT_EQ(ours[i].category_id, e.at("category_id").get<int64_t>());
    for (int k = 0; k < 4; ++k) EXPECT_EQ(ours[i].bbox[k], e.at("bbox")[k].get<double>()) << "bbox[" << k << "]";
    EXPECT_EQ(ours[i].score, e.at("score").get<double>());
    ASSERT_TRUE(ours[i].mask);
    EXPECT_EQ(ours[i].mask->h, e.at("segmentation").at("size")[0].get<uint32_t>());
    EXPECT_EQ(ours[i].mask->w, e.at("segmentation").at("size")[1].get<uint32_t>());
    EXPECT_EQ(coco::to_string(*ours[i].mask), e.at("segmentation").at("counts").get<std::string>());
    uint64_t area = 0;
    for (size_t r = 1; r < ours[i].mask->counts.size(); r += 2) area += ours[i].mask->counts[r];
    EXPECT_EQ(area, e.at("area").get<uint64_t>());
  }
}

TEST(ResultsJson, TorchvisionOutputsGiveThePycocotoolsEncodedResults) {
  const TorchvisionCase c = torchvision_case();
  ASSERT_EQ(c.pasted.masks.size(2), c.height);
  ASSERT_EQ(c.pasted.masks.size(3), c.width);
  expect_results_equal(to_coco_detections(5, c.pasted), c.expected);
  // The cases hold what they claim (else a mutation of the threshold could go unseen).
  EXPECT_EQ(c.expected[0]["area"].get<int64_t>(), c.height * c.width);
  EXPECT_EQ(c.expected[4]["area"].get<int64_t>(), 0);
  EXPECT_GT((c.pasted.masks[6] == 0.5).sum().item<int64_t>(), c.height);
  // The JSON file predict writes carries the same fields.
  coco::ResultsWriter writer;
  writer.add(to_coco_detections(5, c.pasted), "x.jpg");
  const auto written = nlohmann::json::parse(writer.dump());
  ASSERT_EQ(written.size(), c.expected.size());
  for (size_t i = 0; i < written.size(); ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    for (const char* key : {"image_id", "category_id", "bbox", "score", "segmentation"}) {
      EXPECT_EQ(written[i][key], c.expected[i][key]) << key;
    }
    EXPECT_EQ(written[i]["file_name"], "x.jpg");
  }
}

// predict's path: our paste of the per-box masks (torchvision's paste) binarised and encoded box by box.
TEST(ResultsJson, PerBoxPathGivesThePycocotoolsEncodedResultsOfTorchvisionsPaste) {
  const TorchvisionCase c = torchvision_case();
  const MaskPaster paster(c.box_masks.masks, c.box_masks.boxes, c.height, c.width, MaskPaste::kTorchvision);
  expect_results_equal(to_coco_detections(5, c.box_masks, paster), c.expected_pasted);
}

}  // namespace
}  // namespace instseg
