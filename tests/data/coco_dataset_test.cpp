#include "instseg/data/coco_dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "support/input_error.h"
#include "support/test_dir.h"
#include "instseg/coco/rle.h"
#include "instseg/data/image_io.h"
#include "instseg/errors.h"
#include "support/reference.h"

namespace instseg::data {
namespace {

using ::instseg::testing::source_path;
using ::instseg::testing::input_error_of;
using ::instseg::testing::TestDir;
using ::testing::HasSubstr;
using torch::indexing::Slice;

TEST(CocoDataset, TinyCocoValMasksEqualPycocotoolsAnnToMask) {
  const CocoDataset dataset(source_path("datasets/tiny_coco/annotations/instances_val2017.json"),
                            source_path("datasets/tiny_coco/val2017"));
  ASSERT_EQ(dataset.size(), 50);
  EXPECT_EQ(dataset.categories().num_categories(), 80);  // all of the file's, used or not
  EXPECT_EQ(dataset.categories().category_id_of(80), 90);
  EXPECT_EQ(dataset.categories().label_of(1), 1);

  // pycocotools' COCO.annToRLE of every val annotation, in file order.
  const auto fixture = nlohmann::json::parse(
      instseg::testing::read_file_bytes(source_path("tests/fixtures/coco_eval/rle_cases.json")))["ground_truth_rles"];
  std::map<int64_t, std::vector<nlohmann::json>> regular_by_image;
  int64_t crowd = 0;
  for (const auto& entry : fixture) {
    if (entry["iscrowd"].get<int>()) ++crowd;
    else regular_by_image[entry["image_id"].get<int64_t>()].push_back(entry);
  }
  EXPECT_EQ(dataset.skipped().crowd, crowd);
  EXPECT_EQ(dataset.skipped().negatives, 50 - static_cast<int64_t>(regular_by_image.size()));

  int64_t previous_id = -1, compared = 0;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const Sample s = dataset.get(i);
    SCOPED_TRACE(s.file);
    EXPECT_GT(s.image_id, previous_id);  // ascending ids, as torchvision's CocoDetection
    previous_id = s.image_id;
    const auto& expected = regular_by_image[s.image_id];
    ASSERT_EQ(s.targets.masks.size(0), static_cast<int64_t>(expected.size()));
    const int64_t h = s.image.size(1), w = s.image.size(2);
    for (size_t g = 0; g < expected.size(); ++g) {
      const auto rle = coco::from_string(expected[g]["counts"].get<std::string>(), h, w);
      std::vector<uint8_t> pixels = coco::decode(rle);
      const auto reference = torch::from_blob(pixels.data(), {h, w}, torch::kUInt8);
      EXPECT_TRUE(torch::equal(s.targets.masks[g], reference)) << "annotation " << expected[g]["id"];
      EXPECT_EQ(s.targets.masks[g].sum().item<int64_t>(), expected[g]["area"].get<int64_t>());
      const auto& ann = dataset.annotations().annotations();
      const auto it = std::find_if(ann.begin(), ann.end(), [&](const auto& a) { return a.id == expected[g]["id"]; });
      ASSERT_NE(it, ann.end());
      EXPECT_EQ(s.targets.labels[g].item<int64_t>(), dataset.categories().label_of(it->category_id));
      const auto [x, y, bw, bh] = it->bbox;
      const auto box = torch::tensor({float(x), float(y), float(x + bw), float(y + bh)}).clamp_min(0);
      EXPECT_TRUE(torch::allclose(s.targets.boxes[g], torch::min(box, torch::tensor({float(w), float(h), float(w), float(h)}))));
      ++compared;
    }
  }
  EXPECT_EQ(compared + crowd, static_cast<int64_t>(fixture.size()));
}

// Three 20x10 images: "a" with a clipped box, a crowd region and an instance whose first polygon
// has 2 points; "b" with a zero-width box, an annotation with only a 2-point polygon and a
// collinear (empty) polygon; "c" without annotations.
std::string broken_json() {
  return R"({
  "images": [{"id": 5, "file_name": "a.png", "width": 20, "height": 10},
             {"id": 2, "file_name": "b.png", "width": 20, "height": 10},
             {"id": 9, "file_name": "c.png", "width": 20, "height": 10}],
  "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
  "annotations": [
    {"id": 1, "image_id": 5, "category_id": 7, "bbox": [15, 2, 10, 5], "area": 25, "iscrowd": 0,
     "segmentation": [[15, 2, 25, 2, 25, 7, 15, 7]]},
    {"id": 2, "image_id": 5, "category_id": 3, "bbox": [1, 1, 4, 4], "area": 16,
     "segmentation": [[1, 1, 3, 1], [1, 1, 5, 1, 5, 5, 1, 5]]},
    {"id": 3, "image_id": 5, "category_id": 3, "bbox": [0, 0, 20, 10], "area": 10, "iscrowd": 1,
     "segmentation": {"size": [10, 20], "counts": [50, 10, 140]}},
    {"id": 4, "image_id": 2, "category_id": 7, "bbox": [3, 3, 0, 4], "area": 0, "segmentation": [[3, 3, 3, 7, 3, 5]]},
    {"id": 5, "image_id": 2, "category_id": 7, "bbox": [1, 2, 2, 2], "area": 1, "segmentation": [[1, 2, 3, 4]]},
    {"id": 6, "image_id": 2, "category_id": 3, "bbox": [0, 0, 9, 9], "area": 1, "segmentation": [[0, 0, 5, 5, 9, 9]]}
  ]})";
}

void write_images(const TestDir& dir) {
  std::filesystem::create_directories(dir.file("img"));
  for (const std::string name : {"a", "b", "c"}) write_image_png(dir.file("img/" + name + ".png"), torch::rand({3, 10, 20}));
}

TEST(CocoDataset, BadAnnotationsAreDroppedCountedOrClipped) {
  TestDir dir;
  write_images(dir);
  const CocoDataset dataset(dir.write("ann.json", broken_json()), dir.file("img"));
  const CocoSkipCounts& skipped = dataset.skipped();
  EXPECT_EQ(skipped.crowd, 1);
  EXPECT_EQ(skipped.short_polygons, 2);
  EXPECT_EQ(skipped.without_mask, 1);
  EXPECT_EQ(skipped.zero_area, 1);
  EXPECT_EQ(skipped.clipped_boxes, 1);
  EXPECT_EQ(skipped.negatives, 1);
  EXPECT_EQ(skipped.describe(),
            "1 crowd annotation not used, 2 polygons with < 3 points removed, 1 annotation without a mask dropped, "
            "1 zero-area box dropped, 1 box clipped to the image, 1 image without instances kept as negatives");

  ASSERT_EQ(dataset.size(), 3);
  const Sample b = dataset.get(0), a = dataset.get(1), c = dataset.get(2);
  EXPECT_EQ(b.image_id, 2);
  EXPECT_EQ(b.targets.masks.sizes(), (std::vector<int64_t>{0, 10, 20}));  // the collinear mask is empty
  EXPECT_EQ(c.targets.boxes.sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(c.targets.labels.sizes(), (std::vector<int64_t>{0}));

  ASSERT_EQ(a.image_id, 5);
  EXPECT_TRUE(torch::equal(a.targets.labels, torch::tensor({int64_t{2}, int64_t{1}})));  // cat = 7 -> 2, dog = 3 -> 1
  EXPECT_TRUE(torch::equal(a.targets.boxes, torch::tensor({{15.f, 2.f, 20.f, 7.f}, {1.f, 1.f, 5.f, 5.f}})));
  auto expected = torch::zeros({2, 10, 20}, torch::kUInt8);
  expected[0].index_put_({Slice(2, 7), Slice(15, 20)}, 1);
  expected[1].index_put_({Slice(1, 5), Slice(1, 5)}, 1);
  EXPECT_TRUE(torch::equal(a.targets.masks, expected));
}

TEST(CocoDataset, MissingImagesAndBadFilesAreInputErrors) {
  TestDir dir;
  write_images(dir);
  std::filesystem::remove(dir.file("img/b.png"));
  std::filesystem::remove(dir.file("img/c.png"));
  const std::string ann = dir.write("ann.json", broken_json());
  EXPECT_THAT(input_error_of([&] { CocoDataset(ann, dir.file("img")); }),
              HasSubstr(dir.file("img/b.png") + ": image file not found (listed in " + ann + "); 1 more missing"));

  EXPECT_THAT(input_error_of([&] { CocoDataset(dir.write("cut.json", broken_json().substr(0, 100)), dir.file("img")); }),
              HasSubstr("cut.json: not valid JSON"));
  std::string odd = broken_json();
  odd.replace(odd.find("[1, 1, 5, 1, 5, 5, 1, 5]"), 24, "[1, 1, 5, 1, 5, 5, 1]");
  EXPECT_THAT(input_error_of([&] { CocoDataset(dir.write("odd.json", odd), dir.file("img")); }),
              HasSubstr("odd.json: annotations[1]"));
  EXPECT_THAT(input_error_of([&] { CocoDataset(dir.file("none.json"), dir.file("img")); }), HasSubstr("none.json"));

  write_images(dir);
  write_image_png(dir.file("img/a.png"), torch::rand({3, 11, 20}));
  const CocoDataset dataset(ann, dir.file("img"));
  EXPECT_THAT(input_error_of([&] { dataset.get(1); }), HasSubstr("a.png: image is 20x11 but " + ann + " gives 20x10"));
}

}  // namespace
}  // namespace instseg::data
