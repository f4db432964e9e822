// write_instances: what it writes, our reader (Dataset::load) reads back as the same dataset, in
// nlohmann::json's layout (which wrote these files before).
#include "instseg/coco/instances_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "instseg/coco/dataset.h"
#include "instseg/coco/rle.h"
#include "support/input_error.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg::coco {
namespace {

using ::testing::HasSubstr;

void expect_same_dataset(const Dataset& a, const Dataset& b) {
  ASSERT_EQ(a.images().size(), b.images().size());
  for (size_t i = 0; i < a.images().size(); ++i) {
    SCOPED_TRACE("image " + std::to_string(i));
    EXPECT_EQ(a.images()[i].id, b.images()[i].id);
    EXPECT_EQ(a.images()[i].file_name, b.images()[i].file_name);
    EXPECT_EQ(a.images()[i].width, b.images()[i].width);
    EXPECT_EQ(a.images()[i].height, b.images()[i].height);
  }
  ASSERT_EQ(a.categories().size(), b.categories().size());
  for (size_t i = 0; i < a.categories().size(); ++i) {
    EXPECT_EQ(a.categories()[i].id, b.categories()[i].id) << "category " << i;
    EXPECT_EQ(a.categories()[i].name, b.categories()[i].name) << "category " << i;
  }
  ASSERT_EQ(a.annotations().size(), b.annotations().size());
  for (size_t i = 0; i < a.annotations().size(); ++i) {
    SCOPED_TRACE("annotation " + std::to_string(i));
    const Annotation &x = a.annotations()[i], &y = b.annotations()[i];
    EXPECT_EQ(x.id, y.id);
    EXPECT_EQ(x.image_id, y.image_id);
    EXPECT_EQ(x.category_id, y.category_id);
    EXPECT_EQ(x.bbox, y.bbox);
    EXPECT_EQ(x.area, y.area);
    EXPECT_EQ(x.iscrowd, y.iscrowd);
    ASSERT_EQ(x.segmentation.kind, y.segmentation.kind);
    EXPECT_EQ(x.segmentation.polygons, y.segmentation.polygons);
    EXPECT_EQ(x.segmentation.rle.h, y.segmentation.rle.h);
    EXPECT_EQ(x.segmentation.rle.w, y.segmentation.rle.w);
    EXPECT_EQ(x.segmentation.rle.counts, y.segmentation.rle.counts);
  }
}

Segmentation polygons(std::vector<std::vector<double>> parts) {
  Segmentation s;
  s.kind = Segmentation::Kind::kPolygons;
  s.polygons = std::move(parts);
  return s;
}

Segmentation rle(Rle mask) {
  Segmentation s;
  s.kind = Segmentation::Kind::kRle;
  s.rle = std::move(mask);
  return s;
}

// Every kind of entry: polygons of several parts with fractional and negative coordinates, a
// compressed mask whose counts hold a backslash, a crowd region, an annotation without a mask,
// names that need escapes and non-ASCII ones, sparse and large ids.
Dataset every_kind_of_entry() {
  const Rle with_backslash{8, 10, {44, 36}};  // "\\1" in compressed form
  EXPECT_NE(to_string(with_backslash).find('\\'), std::string::npos);
  std::vector<Image> images = {{5, "caf\xC3\xA9 \"1\"\\a.jpg", 10, 8}, {9000000000, "b.png", 4, 3}};
  std::vector<Category> categories = {{90, "hair drier"}, {3, "line\nbreak\ttab"}};
  std::vector<Annotation> annotations;
  annotations.push_back({1, 5, 90, {1.25, 0.5, 4, 3.75}, 16.5, false,
                         polygons({{1.25, 0.5, 5.25, 0.5, 5.25, 4.25, -0.5, 4.25}, {7, 7, 9.125, 7, 9.125, 7.75}})});
  annotations.push_back({7, 5, 3, {0, 0, 2, 8}, 44, false, rle(with_backslash)});
  annotations.push_back({2, 9000000000, 3, {0, 0, 4, 3}, 12, true, rle(Rle{3, 4, {0, 12}})});
  annotations.push_back({3, 9000000000, 90, {1, 1, 1, 1}, 1e-3, false, Segmentation{}});
  return Dataset(std::move(images), std::move(categories), std::move(annotations), "memory");
}

TEST(InstancesWriter, OurReaderReadsBackEveryField) {
  const testing::TestDir dir;
  const Dataset written = every_kind_of_entry();
  write_instances(dir / "instances.json", written);
  const Dataset read = Dataset::load(dir / "instances.json");
  expect_same_dataset(written, read);
  // And the masks the evaluator would use.
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(read.annotation_rle(i).counts, written.annotation_rle(i).counts) << i;
  // Nothing else in the file: pycocotools reads exactly these keys.
  const auto json = nlohmann::json::parse(testing::read_file_bytes(dir / "instances.json"));
  EXPECT_EQ(json.size(), 3u);
  EXPECT_EQ(json["annotations"][2]["iscrowd"], 1);
  EXPECT_FALSE(json["annotations"][3].contains("segmentation"));
}

// The 50 COCO images of tiny_coco: polygons and crowd RLE as COCO writes them. The text is the
// layout nlohmann::json gives the same document (keys sorted, its number format).
TEST(InstancesWriter, TinyCocoRoundTripsInNlohmannsLayout) {
  const Dataset original = Dataset::load(testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json"));
  const std::string text = instances_json(original);
  expect_same_dataset(original, Dataset::parse(text, "written.json"));
  EXPECT_EQ(text, nlohmann::json::parse(text).dump() + "\n");
  EXPECT_NE(text.find("\"segmentation\":{\"counts\":"), std::string::npos);  // the crowd regions, compressed
}

TEST(InstancesWriter, NamesThatAreNotUtf8AreErrorsNamingTheEntry) {
  const Dataset bad_category({{1, "a.jpg", 2, 2}}, {{1, "ok"}, {2, "bad\xFF"}}, {}, "gt");
  EXPECT_THAT(testing::input_error_of([&] { instances_json(bad_category); }),
              HasSubstr("gt: categories[1].name: not valid UTF-8"));
  const Dataset bad_file({{1, "a.jpg", 2, 2}, {2, "\xC3(.jpg", 2, 2}}, {{1, "ok"}}, {}, "gt");
  EXPECT_THAT(testing::input_error_of([&] { instances_json(bad_file); }),
              HasSubstr("gt: images[1].file_name: not valid UTF-8"));
}

}  // namespace
}  // namespace instseg::coco
