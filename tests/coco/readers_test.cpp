// Reading and validating COCO instances and results files: every bad entry is an InputError that
// names the file, the entry and the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <thread>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/coco/results_writer.h"
#include "instseg/errors.h"
#include "support/input_error.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg::coco {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json small_gt() {
  return {{"images", {{{"id", 5}, {"file_name", "a.jpg"}, {"width", 10}, {"height", 8}},
                      {{"id", 2}, {"file_name", "b.jpg"}, {"width", 4}, {"height", 4}}}},
          {"categories", {{{"id", 90}, {"name", "cat"}}, {{"id", 3}, {"name", "dog"}}}},
          {"annotations",
           {{{"id", 1}, {"image_id", 5}, {"category_id", 90}, {"bbox", {1, 1, 4, 4}}, {"area", 16.5},
             {"segmentation", {{1, 1, 5, 1, 5, 5, 1, 5}}}, {"iscrowd", 0}},
            {{"id", 2}, {"image_id", 5}, {"category_id", 3}, {"bbox", {0, 0, 2, 8}}, {"area", 16},
             {"segmentation", {{"size", {8, 10}}, {"counts", {0, 16, 64}}}}, {"iscrowd", 1}}}}};
}

using ::instseg::testing::input_error_of;

TEST(Dataset, ReadsImagesCategoriesAnnotationsAndMasks) {
  const Dataset d = Dataset::parse(small_gt().dump(), "gt.json");
  ASSERT_EQ(d.images().size(), 2u);
  EXPECT_EQ(d.image(5).file_name, "a.jpg");
  EXPECT_EQ(d.image(5).height, 8u);
  EXPECT_EQ(d.category_index(3), 1);
  EXPECT_EQ(d.category_index(4), -1);
  EXPECT_TRUE(d.annotations_of_image(2).empty());
  ASSERT_EQ(d.annotations_of_image(5), (std::vector<size_t>{0, 1}));
  EXPECT_DOUBLE_EQ(d.annotations()[0].area, 16.5);  // kept from the file, not recomputed
  EXPECT_EQ(area(d.annotation_rle(0)), 16u);
  EXPECT_TRUE(d.annotations()[1].iscrowd);
  EXPECT_EQ(d.annotation_rle(1).counts, (std::vector<uint32_t>{0, 16, 64}));
  EXPECT_EQ(to_bbox(d.annotation_rle(1)), (std::array<double, 4>{0, 0, 2, 8}));
}

TEST(Dataset, ImageIdsByFileName) {
  const Dataset d = Dataset::parse(small_gt().dump(), "gt.json");
  EXPECT_EQ(image_ids_by_file_name(d), (std::map<std::string, int64_t>{{"a.jpg", 5}, {"b.jpg", 2}}));
  // A name given twice keeps its last image, as predict --coco-gt always did.
  json twice = small_gt();
  twice["images"].push_back({{"id", 7}, {"file_name", "a.jpg"}, {"width", 1}, {"height", 1}});
  EXPECT_EQ(image_ids_by_file_name(Dataset::parse(twice.dump(), "gt.json")).at("a.jpg"), 7);
}

TEST(Dataset, TinyCocoValHasItsDocumentedContent) {
  const Dataset d = Dataset::load(testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json"));
  EXPECT_EQ(d.images().size(), 50u);
  EXPECT_EQ(d.categories().size(), 80u);
  EXPECT_EQ(d.annotations().size(), 382u);
  int crowd = 0, empty_images = 0;
  for (const auto& a : d.annotations()) crowd += a.iscrowd;
  for (const auto& im : d.images()) empty_images += d.annotations_of_image(im.id).empty();
  EXPECT_EQ(crowd, 5);
  EXPECT_EQ(empty_images, 2);
}

TEST(Dataset, BadEntriesNameFileIndexAndField) {
  struct Case {
    std::function<void(json&)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j["annotations"][1]["image_id"] = 77; }, "gt.json: annotations[1].image_id: unknown image id 77"},
      {[](json& j) { j["annotations"][0]["category_id"] = 4; }, "gt.json: annotations[0].category_id: unknown category id 4"},
      {[](json& j) { j["annotations"][1]["bbox"] = {1, 2, 3}; }, "gt.json: annotations[1].bbox: expected 4 numbers"},
      {[](json& j) { j["annotations"][0].erase("area"); }, "gt.json: annotations[0].area: missing"},
      {[](json& j) { j["annotations"][0]["iscrowd"] = 2; }, "gt.json: annotations[0].iscrowd: expected 0 or 1"},
      {[](json& j) { j["annotations"][1]["segmentation"]["counts"] = {0, 16, 63}; }, "gt.json: annotations[1].segmentation.counts: runs sum to 79"},
      {[](json& j) { j["annotations"][1]["segmentation"]["size"] = {8, 9}; }, "gt.json: annotations[1].segmentation.size"},
      {[](json& j) { j["annotations"][1]["segmentation"]["counts"] = "0~"; }, "gt.json: annotations[1].segmentation.counts: invalid"},
      {[](json& j) { j["annotations"][0]["segmentation"] = {{1, 1, 5}}; }, "gt.json: annotations[0].segmentation[0]: odd"},
      {[](json& j) { j["images"][1]["id"] = 5; }, "gt.json: images[1].id: duplicate image id 5"},
      {[](json& j) { j["images"][0]["width"] = "ten"; }, "gt.json: images[0].width: expected an integer"},
      {[](json& j) { j["categories"][1].erase("name"); }, "gt.json: categories[1].name: missing"},
      {[](json& j) { j.erase("images"); }, "gt.json: missing top-level \"images\""},
  };
  for (const auto& c : cases) {
    json j = small_gt();
    c.edit(j);
    EXPECT_THAT(input_error_of([&] { Dataset::parse(j.dump(), "gt.json"); }), HasSubstr(c.message));
  }
  EXPECT_THAT(input_error_of([] { Dataset::parse("{\"images\": [", "gt.json"); }), HasSubstr("gt.json: not valid JSON"));
  EXPECT_THAT(input_error_of([] { Dataset::load("/nonexistent/gt.json"); }), HasSubstr("/nonexistent/gt.json: cannot open"));
}

TEST(Results, ReadsBoxesMasksAndRoundTrips) {
  const Dataset gt = Dataset::parse(small_gt().dump(), "gt.json");
  const json results = {{{"image_id", 5}, {"category_id", 90}, {"bbox", {1, 2, 3, 4.25}}, {"score", 0.123456789012345},
                         {"segmentation", {{"size", {8, 10}}, {"counts", "d0"}}}}};
  EXPECT_THAT(input_error_of([&] { parse_results(results.dump(), "res.json", gt); }),
              HasSubstr("res.json: results[0].segmentation.counts: runs sum to 20 pixels"));
  json fixed = results;
  fixed[0]["segmentation"]["counts"] = to_string(Rle{8, 10, {80}});
  const auto dets = parse_results(fixed.dump(), "res.json", gt);
  ASSERT_EQ(dets.size(), 1u);
  EXPECT_EQ(dets[0].mask->counts, std::vector<uint32_t>{80});
  const std::string path = ::testing::TempDir() + "/instseg_results_roundtrip.json";
  write_results(path, dets);
  const auto back = read_results(path, gt);
  std::remove(path.c_str());
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].score, dets[0].score);
  EXPECT_EQ(back[0].bbox, dets[0].bbox);
  EXPECT_EQ(back[0].mask->counts, dets[0].mask->counts);
}

TEST(Results, CompressedMasksDecodeToTheSameRuns) {
  const Dataset gt = Dataset::parse(small_gt().dump(), "gt.json");
  // A run of 44 compresses to "\\1": the counts string holds an escaped backslash in the file.
  const Rle with_backslash{8, 10, {44, 36}};
  ASSERT_NE(to_string(with_backslash).find('\\'), std::string::npos);
  const std::vector<Detection> dets = {{5, 90, {1, 2, 3, 4}, true, 0.5, with_backslash},
                                       {5, 3, {0, 0, 2, 2}, true, 0.25, std::nullopt},
                                       {2, 3, {0, 0, 1, 1}, true, 0.75, Rle{4, 4, {0, 16}}}};
  const std::string path = ::testing::TempDir() + "/instseg_results_compressed.json";
  write_results(path, dets);
  const auto decoded = read_results(path, gt);
  const auto compressed = CompressedResults::read(path, gt);
  ASSERT_EQ(compressed.detections().size(), 3u);
  Rle mask;
  std::string text;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_FALSE(compressed.detections()[i].mask);
    EXPECT_EQ(compressed.detections()[i].score, dets[i].score);
    ASSERT_EQ(compressed.has_mask(i), bool(dets[i].mask));
    ASSERT_EQ(bool(decoded[i].mask), bool(dets[i].mask));
    if (!dets[i].mask) continue;
    compressed.decode_mask(i, mask, text);
    EXPECT_EQ(mask.counts, dets[i].mask->counts) << i;
    EXPECT_EQ(decoded[i].mask->counts, dets[i].mask->counts) << i;
    EXPECT_EQ(mask.h, dets[i].mask->h);
  }
  // Validated as read_results.
  const json bad = {{{"image_id", 5}, {"category_id", 90}, {"bbox", {1, 2, 3, 4}}, {"score", 0.5},
                     {"segmentation", {{"size", {8, 10}}, {"counts", "d0"}}}}};
  {
    std::ofstream(path) << bad.dump();
  }
  EXPECT_THAT(input_error_of([&] { CompressedResults::read(path, gt); }),
              HasSubstr("results[0].segmentation.counts: runs sum to 20 pixels"));
  std::remove(path.c_str());
}

TEST(Results, FieldsInAnyKeyOrder) {
  // COCO's own files put "segmentation" first and "counts" before "size".
  const std::string text = R"({"images": [{"height": 8, "width": 10, "file_name": "a.jpg", "id": 5}],
    "annotations": [{"segmentation": {"counts": [0, 16, 64], "size": [8, 10]}, "iscrowd": 1, "area": 16,
                     "bbox": [0, 0, 2, 8], "category_id": 3, "image_id": 5, "id": 2}],
    "categories": [{"name": "dog", "id": 3}], "info": {"note": "skipped \u00e9"}})";
  const Dataset d = Dataset::parse(text, "gt.json");
  ASSERT_EQ(d.annotations().size(), 1u);
  EXPECT_EQ(d.annotation_rle(0).counts, (std::vector<uint32_t>{0, 16, 64}));
  const std::string counts = to_string(Rle{8, 10, {30, 50}});
  const auto dets = parse_results(R"([{"segmentation": {"counts": ")" + counts +
                                      R"(", "size": [8, 10]}, "score": 0.5, "category_id": 3, "image_id": 5}])",
                                  "r.json", d);
  ASSERT_EQ(dets.size(), 1u);
  EXPECT_FALSE(dets[0].has_bbox);
  EXPECT_EQ(dets[0].mask->counts, (std::vector<uint32_t>{30, 50}));
}

TEST(Results, MalformedJsonNamesTheFileAndByte) {
  const Dataset gt = Dataset::parse(small_gt().dump(), "gt.json");
  // The byte of the first error, in the entry that has it.
  const std::string doubled = R"([{"image_id": 5, "category_id": 90, "bbox": [1, 2, 3, 4], "score": 0.5},
                                  {"image_id": 5,, "score": 1}])";
  EXPECT_THAT(input_error_of([&] { parse_results(doubled, "res.json", gt); }),
              HasSubstr("res.json: not valid JSON at byte " + std::to_string(doubled.find(",,") + 1) + ": expected a key"));
  EXPECT_THAT(input_error_of([&] { parse_results(R"([{"image_id": 5, "score": 0.5e}])", "res.json", gt); }),
              HasSubstr("res.json: not valid JSON at byte 30: invalid number: a digit must follow the exponent"));
  EXPECT_THAT(input_error_of([&] { Dataset::parse(R"({"images": [], "categories": [], "annotations": [{]})", "gt.json"); }),
              HasSubstr("gt.json: not valid JSON at byte 50: expected a key"));
  EXPECT_THAT(input_error_of([&] { Dataset::parse(R"({"images": [] "categories": []})", "gt.json"); }),
              HasSubstr("gt.json: not valid JSON at byte 14: expected ',' or '}'"));
}

TEST(Results, BadResultsAreClearErrors) {
  const Dataset gt = Dataset::parse(small_gt().dump(), "gt.json");
  const json good = {{"image_id", 5}, {"category_id", 90}, {"bbox", {1, 2, 3, 4}}, {"score", 0.5}};
  const auto with = [&](const std::string& key, const json& value) {
    json r = good;
    r[key] = value;
    return json::array({good, r}).dump();
  };
  EXPECT_THAT(input_error_of([&] { parse_results(with("image_id", 6), "res.json", gt); }),
              HasSubstr("res.json: results[1].image_id: image id 6 is not in the ground truth"));
  EXPECT_THAT(input_error_of([&] { parse_results(with("category_id", 1), "res.json", gt); }),
              HasSubstr("res.json: results[1].category_id: category id 1 is not in the ground truth"));
  EXPECT_THAT(input_error_of([&] { parse_results(with("score", "high"), "res.json", gt); }),
              HasSubstr("res.json: results[1].score: expected a number"));
  EXPECT_THAT(input_error_of([&] { parse_results(with("segmentation", {{"size", {8, 10}}, {"counts", "R"}}), "res.json", gt); }),
              HasSubstr("res.json: results[1].segmentation.counts: compressed counts end inside a number"));
  EXPECT_THAT(input_error_of([&] { parse_results("[{\"image_id\": 5, \"category_id\": 90, \"bbox\": [1,2,3,4], \"score\": NaN}]", "res.json", gt); }),
              HasSubstr("NaN / Infinity are not JSON numbers"));
  EXPECT_THAT(input_error_of([&] { parse_results("[]", "res.json", gt); }), HasSubstr("res.json: the results list is empty"));
  EXPECT_THAT(input_error_of([&] { parse_results("{}", "res.json", gt); }), HasSubstr("res.json: expected a JSON list"));
  json no_box = json::array({good, good});
  no_box[1].erase("bbox");
  EXPECT_THAT(input_error_of([&] { parse_results(no_box.dump(), "res.json", gt); }), HasSubstr("res.json: results[1].bbox: missing"));
}


// Issue 14: out-of-range coordinates were undefined behaviour in rasterisation and accepted
// silently; the reader names the coordinate.
TEST(Dataset, PolygonCoordinatesAreCheckedWhenRead) {
  const auto with_polygon = [](const std::string& polygon) {
    json j = small_gt();
    j["annotations"][0]["segmentation"] = json::array({json::array({1, 1, 5, 1, 5, 5}), "@"});
    std::string text = j.dump();
    text.replace(text.find("\"@\""), 3, polygon);  // as written (nlohmann refuses 1e999)
    return input_error_of([&] { Dataset::parse(text, "gt.json"); });
  };
  EXPECT_THAT(with_polygon("[1, 1, 5, 5e8, 5, 5]"),
              HasSubstr("gt.json: annotations[0].segmentation[1][3]: 5e8 is beyond +-10000000 pixels"));
  EXPECT_THAT(with_polygon("[1, 1, 5, 1, -4.4e8, 5]"), HasSubstr("gt.json: annotations[0].segmentation[1][4]: -4.4e8 is beyond"));
  EXPECT_THAT(with_polygon("[1, 1e999, 5, 1, 5, 5]"),
              HasSubstr("gt.json: annotations[0].segmentation[1][1]: not a finite number (1e999)"));
  EXPECT_THAT(with_polygon("[1, 1, \"5\", 1, 5, 5]"), HasSubstr("gt.json: annotations[0].segmentation[1][2]: expected a number"));
  EXPECT_EQ(with_polygon("[1, 1, 5, 1e7, -1e7, 5]"), "no error");
}

// Issue 14: images whose h * w does not fit COCO's 32-bit RLE positions.
TEST(Dataset, ImageSizesMustFitThirtyTwoBitMasks) {
  json j = small_gt();
  j["images"][1]["width"] = 1048576;
  j["images"][1]["height"] = 4096;
  EXPECT_THAT(input_error_of([&] { Dataset::parse(j.dump(), "gt.json"); }),
              HasSubstr("gt.json: images[1]: width x height = 1048576 x 4096 pixels, more than 2^32 - 1"));
  j["images"][1]["width"] = 1048577;
  EXPECT_THAT(input_error_of([&] { Dataset::parse(j.dump(), "gt.json"); }),
              HasSubstr("gt.json: images[1].width: must be between 1 and 1048576, got 1048577"));
  j["images"][1]["width"] = 1048576;
  j["images"][1]["height"] = 4095;
  EXPECT_EQ(Dataset::parse(j.dump(), "gt.json").image(2).width, 1048576u);
}

// Issue 14: pycocotools keeps the last of two annotations with one id in its index (both count in
// evaluation, as that one): an error here, like duplicate image and category ids.
TEST(Dataset, DuplicateAnnotationIdsAreErrors) {
  json j = small_gt();
  j["annotations"][1]["id"] = 1;
  EXPECT_THAT(input_error_of([&] { Dataset::parse(j.dump(), "gt.json"); }),
              HasSubstr("gt.json: annotations[1].id: duplicate annotation id 1 (also annotations[0])"));
  const Dataset d = Dataset::parse(small_gt().dump(), "gt.json");
  std::vector<Annotation> annotations = d.annotations();
  annotations[0].id = annotations[1].id;
  EXPECT_THAT(input_error_of([&] { Dataset(d.images(), d.categories(), annotations, "split"); }),
              HasSubstr("split: annotations[1].id: duplicate annotation id 2 (also annotations[0])"));
}

// Issue 14: a byte-order mark was "unexpected '\xEF'". Skipped at the start of a file (RFC 8259
// lets parsers ignore it; nlohmann::json, which reads the training set, does).
TEST(Dataset, ByteOrderMarkAtTheStartIsSkipped) {
  const std::string bom = "\xEF\xBB\xBF";
  const Dataset d = Dataset::parse(bom + small_gt().dump(), "gt.json");
  EXPECT_EQ(d.annotations().size(), 2u);
  const std::string results = R"([{"image_id": 5, "category_id": 90, "bbox": [1, 2, 3, 4], "score": 0.5}])";
  EXPECT_EQ(parse_results(bom + results, "res.json", d).size(), 1u);
  EXPECT_THAT(input_error_of([&] { parse_results(" " + bom + results, "res.json", d); }),
              HasSubstr("res.json: not valid JSON at byte 1: unexpected byte 0xEF (a UTF-8 byte-order mark, EF BB BF, "
                        "is only allowed at the very start)"));
  EXPECT_THAT(input_error_of([&] { parse_results("\x01" + results, "res.json", d); }),
              HasSubstr("res.json: not valid JSON at byte 0: unexpected byte 0x01, expected a value"));
  // The error offsets still count the mark's bytes, as an editor showing the file does.
  EXPECT_THAT(input_error_of([&] { parse_results(bom + "[1,]", "res.json", d); }), HasSubstr("at byte 6: unexpected ']'"));
}

// Issue 14: --gt naming a folder said "not valid JSON at byte 0"; /dev/zero read until memory ran out.
TEST(Dataset, FoldersAndDevicesAreNotFiles) {
  const testing::TestDir dir;
  EXPECT_THAT(input_error_of([&] { Dataset::load(dir.str()); }), HasSubstr(dir.str() + ": is a folder, not a file"));
  const Dataset gt = Dataset::parse(small_gt().dump(), "gt.json");
  EXPECT_THAT(input_error_of([&] { read_results(dir.str(), gt); }), HasSubstr(": is a folder, not a file"));
  EXPECT_THAT(input_error_of([&] { CompressedResults::read(dir.str(), gt); }), HasSubstr(": is a folder, not a file"));
  EXPECT_THAT(input_error_of([&] { Dataset::load("/dev/zero"); }),
              HasSubstr("/dev/zero: not a regular file (a character device)"));
}

// A named pipe (mkfifo, as a shell's process substitution or a streaming job gives) is read through
// the descriptor opened first: reopening it found the writer gone and the data lost.
TEST(Dataset, NamedPipesAreReadOnce) {
  const testing::TestDir dir;
  const std::string fifo = dir / "gt.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string text = small_gt().dump();
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);  // waits for the reader
    if (fd < 0) return;
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  });
  std::optional<Dataset> d;
  std::string error;
  try {
    d = Dataset::load(fifo);
  } catch (const InputError& e) {
    error = e.what();
  }
  writer.join();
  ASSERT_TRUE(d) << error;
  EXPECT_EQ(d->images().size(), 2u);
  EXPECT_EQ(d->annotations().size(), 2u);
}

// Deep nesting anywhere in an entry is skipped without recursion (a guard: no stack overflow).
TEST(Dataset, DeepNestingInEntriesIsNoCrash) {
  const size_t depth = 300000;
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  json j = small_gt();
  j["annotations"][0]["extra"] = "@";
  std::string text = j.dump();
  text.replace(text.find("\"@\""), 3, deep);
  EXPECT_EQ(Dataset::parse(text, "gt.json").annotations().size(), 2u);
  j = small_gt();
  j["annotations"][0]["segmentation"] = "@";
  text = j.dump();
  text.replace(text.find("\"@\""), 3, deep);
  EXPECT_THAT(input_error_of([&] { Dataset::parse(text, "gt.json"); }),
              HasSubstr("gt.json: annotations[0].segmentation[0][0]: expected a number"));
}

}  // namespace
}  // namespace instseg::coco
