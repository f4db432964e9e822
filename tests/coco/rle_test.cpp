// RLE against pycocotools.mask outputs (fixtures/coco_eval/rle_cases.json), byte for byte.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "instseg/coco/dataset.h"
#include "instseg/coco/rle.h"
#include "instseg/errors.h"
#include "support/input_error.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg::coco {
namespace {

using nlohmann::json;

const json& cases() {
  static const json data = [] {
    return json::parse(testing::read_file_bytes(testing::source_path("tests/fixtures/coco_eval/rle_cases.json")));
  }();
  return data;
}

std::vector<uint8_t> rows_to_mask(const json& rows) {
  std::vector<uint8_t> mask;
  for (const auto& row : rows) {
    for (char c : row.get<std::string>()) mask.push_back(c == '1');
  }
  return mask;
}

std::vector<std::string> mask_to_rows(const std::vector<uint8_t>& mask, uint32_t h, uint32_t w) {
  std::vector<std::string> rows(h, std::string(w, '0'));
  for (uint32_t y = 0; y < h; ++y) {
    for (uint32_t x = 0; x < w; ++x) rows[y][x] = mask[y * w + x] ? '1' : '0';
  }
  return rows;
}

// maskApi's rleFrPoly transcribed literally (all boundary points stored, floating-point tests):
// the slow, obvious reference for the streamed from_polygon.
Rle reference_from_polygon(const std::vector<double>& xy, uint32_t h, uint32_t w) {
  const size_t k = xy.size() / 2;
  if (k == 0) return Rle{h, w, {uint32_t(uint64_t(h) * w)}};
  const double scale = 5;
  std::vector<int> x(k + 1), y(k + 1), u, v;
  for (size_t j = 0; j < k; ++j) x[j] = int(scale * xy[j * 2] + .5), y[j] = int(scale * xy[j * 2 + 1] + .5);
  x[k] = x[0];
  y[k] = y[0];
  for (size_t j = 0; j < k; ++j) {
    int xs = x[j], xe = x[j + 1], ys = y[j], ye = y[j + 1];
    const int dx = std::abs(xe - xs), dy = std::abs(ys - ye);
    const bool flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
    if (flip) std::swap(xs, xe), std::swap(ys, ye);
    const double s = dx >= dy ? (dx == 0 ? 0.0 : double(ye - ys) / dx) : double(xe - xs) / dy;
    for (int d = 0; d <= std::max(dx, dy); ++d) {
      const int t = flip ? std::max(dx, dy) - d : d;
      u.push_back(dx >= dy ? t + xs : int(xs + s * t + .5));
      v.push_back(dx >= dy ? int(ys + s * t + .5) : t + ys);
    }
  }
  std::vector<uint32_t> a;
  for (size_t j = 1; j < u.size(); ++j) {
    if (u[j] == u[j - 1]) continue;
    double xd = double(u[j] < u[j - 1] ? u[j] : u[j] - 1);
    xd = (xd + .5) / scale - .5;
    if (std::floor(xd) != xd || xd < 0 || xd > double(w) - 1) continue;
    double yd = double(v[j] < v[j - 1] ? v[j] : v[j - 1]);
    yd = std::ceil(std::min(std::max((yd + .5) / scale - .5, 0.0), double(h)));
    a.push_back(uint32_t(int(xd) * int(h) + int(yd)));
  }
  a.push_back(h * w);
  std::sort(a.begin(), a.end());
  // Differences are the runs; a zero difference joins the next run onto the previous one.
  std::vector<uint32_t> diffs(a.size());
  uint32_t previous = 0;
  for (size_t j = 0; j < a.size(); ++j) diffs[j] = a[j] - previous, previous = a[j];
  Rle rle{h, w, {diffs[0]}};
  for (size_t j = 1; j < diffs.size();) {
    if (diffs[j] > 0) {
      rle.counts.push_back(diffs[j++]);
    } else if (++j < diffs.size()) {
      rle.counts.back() += diffs[j++];
    }
  }
  return rle;
}

// maskApi's rleToBbox with its divisions: the reference for to_bbox.
std::array<double, 4> reference_to_bbox(const Rle& rle) {
  const size_t m = rle.counts.size() / 2 * 2;
  if (m == 0) return {0, 0, 0, 0};
  const uint32_t h = rle.h;
  uint32_t xs = rle.w, ys = h, xe = 0, ye = 0, xp = 0, cc = 0;
  for (size_t j = 0; j < m; ++j) {
    cc += rle.counts[j];
    const uint32_t t = cc - uint32_t(j % 2), y = t % h, x = (t - y) / h;
    if (j % 2 == 0) {
      xp = x;
    } else if (xp < x) {
      ys = 0;
      ye = h - 1;
    }
    xs = std::min(xs, x), xe = std::max(xe, x), ys = std::min(ys, y), ye = std::max(ye, y);
  }
  return {double(xs), double(ys), double(xe - xs + 1), double(ye - ys + 1)};
}

// maskApi's rleIou loop over both run lists (runs of either value): the reference for mask_iou.
double reference_mask_iou(const Rle& dt, const Rle& gt, bool gt_is_crowd) {
  if (dt.h != gt.h || dt.w != gt.w) return -1;
  const auto& a = dt.counts;
  const auto& b = gt.counts;
  uint32_t ca = a.empty() ? 0 : a[0], cb = b.empty() ? 0 : b[0];
  bool va = false, vb = false;
  size_t ia = 1, ib = 1;
  uint64_t inter = 0, uni = 0, remaining = 1;
  while (remaining > 0) {
    const uint32_t c = std::min(ca, cb);
    if (va || vb) {
      uni += c;
      if (va && vb) inter += c;
    }
    remaining = 0;
    ca -= c;
    if (!ca && ia < a.size()) {
      ca = a[ia++];
      va = !va;
    }
    remaining += ca;
    cb -= c;
    if (!cb && ib < b.size()) {
      cb = b[ib++];
      vb = !vb;
    }
    remaining += cb;
  }
  if (inter == 0) {
    uni = 1;
  } else if (gt_is_crowd) {
    uni = area(dt);
  }
  return double(inter) / double(uni);
}

// {size, counts, area, bbox} as pycocotools gives it.
void expect_same(const Rle& rle, const json& expected, const std::string& name) {
  EXPECT_EQ(to_string(rle), expected["counts"].get<std::string>()) << name;
  EXPECT_EQ(area(rle), expected["area"].get<uint64_t>()) << name;
  const auto box = to_bbox(rle);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(box[i], expected["bbox"][i].get<double>(), 1e-12) << name;
  if (expected.contains("size")) {
    EXPECT_EQ(rle.h, expected["size"][0].get<uint32_t>()) << name;
    EXPECT_EQ(rle.w, expected["size"][1].get<uint32_t>()) << name;
  }
}

Rle parse(const json& rle) {
  return from_string(rle["counts"].get<std::string>(), rle["size"][0].get<uint32_t>(), rle["size"][1].get<uint32_t>());
}

TEST(Rle, EncodeDecodeMatchPycocotools) {
  ASSERT_GT(cases()["encode"].size(), 20u);
  for (const auto& c : cases()["encode"]) {
    const std::string name = c["name"];
    const uint32_t h = c["h"], w = c["w"];
    const auto mask = rows_to_mask(c["rows"]);
    const Rle rle = encode(mask.data(), h, w);
    EXPECT_EQ(rle.counts, c["counts_uncompressed"].get<std::vector<uint32_t>>()) << name;
    expect_same(rle, c, name);
    const Rle back = from_string(c["counts"], h, w);
    EXPECT_EQ(back.counts, rle.counts) << name;
    EXPECT_EQ(mask_to_rows(decode(back), h, w), c["rows"].get<std::vector<std::string>>()) << name;
  }
}

TEST(Rle, FromUncompressedMatchesPycocotools) {
  for (const auto& c : cases()["from_uncompressed"]) {
    const std::string name = c["name"];
    const uint32_t h = c["h"], w = c["w"];
    const Rle rle = from_uncompressed(c["counts_uncompressed"].get<std::vector<uint32_t>>(), h, w);
    expect_same(rle, c, name);
    if (!c["rows"].is_null()) {
      EXPECT_EQ(mask_to_rows(decode(rle), h, w), c["rows"].get<std::vector<std::string>>()) << name;
    }
  }
}

TEST(Rle, FromPolygonsMatchesPycocotools) {
  ASSERT_GT(cases()["from_polygons"].size(), 15u);
  for (const auto& c : cases()["from_polygons"]) {
    const std::string name = c["name"];
    const uint32_t h = c["h"], w = c["w"];
    const auto polygons = c["polygons"].get<std::vector<std::vector<double>>>();
    ASSERT_EQ(polygons.size(), c["parts"].size()) << name;
    for (size_t p = 0; p < polygons.size(); ++p) expect_same(from_polygon(polygons[p], h, w), c["parts"][p], name);
    const Rle merged = from_polygons(polygons, h, w);
    expect_same(merged, c["merged"], name);
    if (c.contains("merged_rows")) {
      EXPECT_EQ(mask_to_rows(decode(merged), h, w), c["merged_rows"].get<std::vector<std::string>>()) << name;
    }
  }
}

TEST(Rle, FromBoxesMatchesPycocotools) {
  for (const auto& c : cases()["from_boxes"]) {
    const uint32_t h = c["h"], w = c["w"];
    const Rle rle = from_box(c["box"].get<std::array<double, 4>>(), h, w);
    expect_same(rle, c, c["box"].dump());
    EXPECT_EQ(mask_to_rows(decode(rle), h, w), c["rows"].get<std::vector<std::string>>());
  }
}

// pycocotools rejects these polygon lists; a 4-value first polygon is its box case.
TEST(Rle, RejectsWhatFrPyObjectsRejects) {
  const auto& errors = cases()["frPyObjects_errors"];
  ASSERT_EQ(errors.size(), 5u);
  int polygon_lists = 0;
  for (const auto& c : errors) {
    const json& input = c["input"];
    if (!input[0].is_array()) continue;  // flat lists cannot be given as polygon lists in C++
    ++polygon_lists;
    const auto polygons = input.get<std::vector<std::vector<double>>>();
    EXPECT_THROW(from_polygons(polygons, c["h"], c["w"]), InputError) << c["call"];
  }
  EXPECT_EQ(polygon_lists, 3);
  // The reader rejects flat lists and the rest with a message naming the entry and field.
  for (const auto& c : errors) {
    json gt = {{"images", {{{"id", 1}, {"file_name", "a.jpg"}, {"width", 10}, {"height", 10}}}},
               {"categories", {{{"id", 1}, {"name", "x"}}}},
               {"annotations", {{{"id", 1}, {"image_id", 1}, {"category_id", 1}, {"bbox", {1, 1, 2, 2}},
                                 {"area", 4}, {"segmentation", c["input"]}}}}};
    EXPECT_THAT([&] { Dataset::parse(gt.dump(), "gt.json"); },
                ::testing::ThrowsMessage<InputError>(::testing::HasSubstr("gt.json: annotations[0].segmentation")))
        << c["call"];
  }
}

TEST(Rle, MergeMatchesPycocotools) {
  for (const auto& c : cases()["merge"]) {
    const std::string name = c["name"];
    const uint32_t h = c["size"][0], w = c["size"][1];
    std::vector<Rle> inputs;
    for (const auto& counts : c["inputs"]) inputs.push_back(from_string(counts, h, w));
    const Rle uni = merge(inputs, false), inter = merge(inputs, true);
    expect_same(uni, c["union"], name);
    expect_same(inter, c["intersection"], name);
    EXPECT_EQ(mask_to_rows(decode(uni), h, w), c["union_rows"].get<std::vector<std::string>>()) << name;
    EXPECT_EQ(mask_to_rows(decode(inter), h, w), c["intersection_rows"].get<std::vector<std::string>>()) << name;
  }
}

TEST(Rle, IouMatchesPycocotoolsIncludingCrowdAndSizeMismatch) {
  int checked = 0;
  for (const auto& c : cases()["iou"]) {
    const std::string kind = c["kind"];
    const auto& dt = c["dt"];
    const auto& gt = c["gt"];
    for (size_t d = 0; d < dt.size(); ++d) {
      for (size_t g = 0; g < gt.size(); ++g) {
        const bool crowd = c["iscrowd"][g].get<int>() != 0;
        const double expected = c["iou"][d][g];
        const double got = kind == "bbox" ? box_iou(dt[d].get<std::array<double, 4>>(), gt[g].get<std::array<double, 4>>(), crowd)
                                          : iou(parse(dt[d]), parse(gt[g]), crowd);
        EXPECT_NEAR(got, expected, 1e-12) << kind << " d=" << d << " g=" << g;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 30);
}

TEST(Rle, GroundTruthAnnotationsMatchAnnToRle) {
  const Dataset gt = Dataset::load(testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json"));
  std::map<int64_t, size_t> by_id;
  for (size_t i = 0; i < gt.annotations().size(); ++i) by_id[gt.annotations()[i].id] = i;
  const auto& expected = cases()["ground_truth_rles"];
  ASSERT_EQ(expected.size(), 382u);
  for (const auto& e : expected) {
    const size_t index = by_id.at(e["id"].get<int64_t>());
    const Annotation& a = gt.annotations()[index];
    EXPECT_EQ(a.iscrowd, e["iscrowd"].get<int>() != 0);
    EXPECT_DOUBLE_EQ(a.area, e["annotation_area"].get<double>());
    expect_same(gt.annotation_rle(index), e, "annotation " + e["id"].dump());
    if (e.contains("parts")) {
      const Image& im = gt.image(a.image_id);
      for (size_t p = 0; p < e["parts"].size(); ++p) {
        EXPECT_EQ(to_string(from_polygon(a.segmentation.polygons[p], im.height, im.width)), e["parts"][p].get<std::string>());
      }
    }
  }
}

TEST(Rle, StreamedPolygonsEqualTheLiteralMaskApiTranscription) {
  // Random polygons: fractional, negative and out-of-image coordinates, repeated points, steep
  // and flat edges, small and large images.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> unit(0, 1);
  int checked = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const uint32_t h = 1 + uint32_t(unit(rng) * (trial % 3 == 0 ? 12 : 500));
    const uint32_t w = 1 + uint32_t(unit(rng) * (trial % 3 == 0 ? 12 : 700));
    const size_t points = 3 + size_t(unit(rng) * (trial % 2 ? 6 : 40));
    std::vector<double> xy;
    for (size_t p = 0; p < points; ++p) {
      const bool grid = unit(rng) < 0.3;  // whole and half pixels hit the rounding edges
      const double x = -0.2 * w + unit(rng) * 1.4 * w, y = -0.2 * h + unit(rng) * 1.4 * h;
      xy.push_back(grid ? std::round(x * 2) / 2 : x);
      xy.push_back(grid ? std::round(y * 2) / 2 : y);
      if (unit(rng) < 0.1) xy.insert(xy.end(), {xy[xy.size() - 2], xy[xy.size() - 1]});  // repeated point
    }
    ASSERT_EQ(from_polygon(xy, h, w).counts, reference_from_polygon(xy, h, w).counts) << "trial " << trial;
    ++checked;
  }
  EXPECT_EQ(checked, 3000);
}

TEST(Rle, BoxesEqualMaskApiDivisions) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> size(1, 3000);
  for (int trial = 0; trial < 2000; ++trial) {
    const uint32_t h = trial % 4 == 0 ? 1 + trial % 7 : size(rng), w = size(rng) % 700 + 1;
    const uint64_t total = uint64_t(h) * w;
    Rle rle{h, w, {}};
    uint64_t used = 0;
    while (used < total) {
      const uint64_t run = std::min<uint64_t>(total - used, rng() % (trial % 2 ? 5 * h : 40) + (rle.counts.empty() ? 0 : 1));
      rle.counts.push_back(uint32_t(run));
      used += run;
    }
    ASSERT_EQ(to_bbox(rle), reference_to_bbox(rle)) << "trial " << trial;
  }
}

// Empty 1-runs (uncompressed counts may hold them) contain no pixel: the box is the decoded
// foreground's, inside the mask, where maskApi's walk would take a neighbouring pixel or one past
// the end (a fuzzer finding).
TEST(Rle, BoxesIgnoreEmptyRuns) {
  const auto pixel_box = [](const Rle& rle) {
    const auto pixels = decode(rle);
    uint32_t xs = rle.w, ys = rle.h, xe = 0, ye = 0;
    bool any = false;
    for (uint32_t x = 0; x < rle.w; ++x) {
      for (uint32_t y = 0; y < rle.h; ++y) {
        if (!pixels[size_t(y) * rle.w + x]) continue;
        any = true;
        xs = std::min(xs, x), xe = std::max(xe, x), ys = std::min(ys, y), ye = std::max(ye, y);
      }
    }
    return any ? std::array<double, 4>{double(xs), double(ys), double(xe - xs + 1), double(ye - ys + 1)}
               : std::array<double, 4>{0, 0, 0, 0};
  };
  const std::vector<Rle> cases = {
      {1, 4, {2, 1, 1, 0}},        // empty run at the very end: maskApi's column 4 of 4
      {3, 3, {0, 0, 4, 2, 3}},     // empty first 1-run: maskApi's pixel -1
      {3, 3, {4, 0, 1, 1, 3}},     // empty run between: maskApi's pixel 3
      {2, 2, {1, 0, 3}},           // only empty runs: an empty mask
      {4, 5, {3, 0, 2, 0, 1, 6, 8}},
  };
  for (const Rle& rle : cases) {
    const Rle checked = from_uncompressed(rle.counts, rle.h, rle.w);
    EXPECT_EQ(to_bbox(checked), pixel_box(checked)) << ::testing::PrintToString(rle.counts);
  }
  EXPECT_EQ(to_bbox(cases[0]), (std::array<double, 4>{2, 0, 1, 1}));
}

TEST(Rle, MaskIouEqualsMaskApiRunWalk) {
  std::mt19937 rng(5);
  const auto random_rle = [&](uint32_t h, uint32_t w, uint32_t max_run) {
    const uint64_t total = uint64_t(h) * w;
    Rle rle{h, w, {}};
    for (uint64_t used = 0; used < total;) {
      const uint64_t run = std::min<uint64_t>(total - used, rng() % max_run + (rle.counts.empty() ? 0 : 1));
      rle.counts.push_back(uint32_t(run));
      used += run;
    }
    if (rng() % 3 == 0) rle.counts.push_back(0);  // a trailing empty run
    return rle;
  };
  for (int trial = 0; trial < 3000; ++trial) {
    const uint32_t h = 1 + rng() % 60, w = 1 + rng() % 60;
    const Rle a = random_rle(h, w, 1 + rng() % 200), b = random_rle(h, w, 1 + rng() % 200);
    for (bool crowd : {false, true}) {
      ASSERT_EQ(mask_iou(a, b, crowd), reference_mask_iou(a, b, crowd)) << "trial " << trial;
      ASSERT_EQ(mask_iou(a, b, crowd, area(a), area(b)), reference_mask_iou(a, b, crowd)) << "trial " << trial;
    }
  }
  EXPECT_EQ(mask_iou(Rle{2, 2, {4}}, Rle{2, 3, {6}}, false), -1);
}

TEST(Rle, MalformedCompressedCountsAreErrors) {
  EXPECT_THROW(from_string("d0", 5, 5), InputError);   // 20 pixels for a 25-pixel mask
  EXPECT_THROW(from_string("d", 5, 4), InputError);    // ends inside a number ('d' has the 0x20 bit)
  EXPECT_THROW(from_string("0~", 5, 4), InputError);   // '~' is outside '0'..'o'
  EXPECT_EQ(from_string("d0", 5, 4).counts, std::vector<uint32_t>{20});
  EXPECT_THROW(from_uncompressed({3, 4}, 2, 2), InputError);
}


// Issue 14: coordinates beyond +-4.3e8 overflowed maskApi's int casts (undefined behaviour).
TEST(Rle, PolygonCoordinatesMustBeFiniteAndInRange) {
  using ::instseg::testing::input_error_of;
  using ::testing::HasSubstr;
  const auto with = [](size_t i, double v) {
    std::vector<double> xy = {1, 1, 8, 1, 8, 8, 1, 8};
    xy[i] = v;
    return input_error_of([&] { from_polygon(xy, 10, 10); });
  };
  EXPECT_THAT(with(2, 5e8), HasSubstr("polygon coordinate 2 is 5e+08: beyond +-1e+07 pixels"));
  EXPECT_THAT(with(5, -1e300), HasSubstr("polygon coordinate 5 is -1e+300"));
  EXPECT_THAT(with(0, std::nan("")), HasSubstr("polygon coordinate 0 is nan: not a finite number"));
  EXPECT_THAT(with(7, INFINITY), HasSubstr("polygon coordinate 7 is inf"));
  EXPECT_THAT(input_error_of([] { from_polygons({{1, 1, 8, 1, 8, 8}, {0, 0, 2e7, 0, 0, 3}}, 10, 10); }),
              HasSubstr("polygon coordinate 2 is 2e+07"));
  // At the limit it is accepted, and clipped to the image as maskApi does.
  EXPECT_EQ(from_polygon({-1e7, -1e7, 1e7, -1e7, 1e7, 1e7, -1e7, 1e7}, 3, 4).counts, (std::vector<uint32_t>{0, 12}));
  // A box is clamped instead (exact for an axis-aligned rectangle): results hold any finite box.
  EXPECT_EQ(from_box({-1e300, 1, 2e300, 1e300}, 3, 4).counts, (std::vector<uint32_t>{1, 2, 1, 2, 1, 2, 1, 2}));
  EXPECT_EQ(from_box({2, 0, 1e300, 1}, 3, 4).counts, from_box({2, 0, 10, 1}, 3, 4).counts);
}

// Issue 14: a polygon zigzagging far outside the image reserved memory for its whole unclipped
// boundary (~4e10 crossings here: std::bad_alloc). Only columns [0, w) can hold crossings.
TEST(Rle, PolygonMemoryIsBoundedByTheMaskNotTheEdgeLength) {
  std::vector<double> far, near;
  for (int i = 0; i < 2000; ++i) {
    const double y = 0.3 + (i % 37) * 0.25;  // horizontal edges: clamping x keeps their crossings
    for (const double x : {-1e7, 1e7}) {
      far.insert(far.end(), {i % 2 ? -x : x, y});
      near.insert(near.end(), {i % 2 ? -x / 1e6 : x / 1e6, y});
    }
  }
  const Rle expected = from_polygon(near, 10, 10);
  EXPECT_EQ(expected.counts, reference_from_polygon(near, 10, 10).counts);
  EXPECT_EQ(from_polygon(far, 10, 10).counts, expected.counts);
}

// Crossings are compacted (pairs at one position cancel) when they pile up: the same polygon
// traced an odd number of times is itself, an even number of times nothing.
TEST(Rle, RepeatedTracesCancelInPairs) {
  const uint32_t h = 7, w = 5000;
  const std::vector<double> once = {-3, 0.4, 5003, 2.2, 4000, 6.6, 10, 5.1, 2500, 3.3};
  const Rle single = from_polygon(once, h, w);
  ASSERT_GT(single.counts.size(), 4000u);
  std::vector<double> odd, even;
  for (int i = 0; i < 301; ++i) odd.insert(odd.end(), once.begin(), once.end());  // 4.5M crossings
  even = odd;
  even.insert(even.end(), once.begin(), once.end());
  EXPECT_EQ(from_polygon(odd, h, w).counts, single.counts);
  EXPECT_EQ(from_polygon(even, h, w).counts, std::vector<uint32_t>{h * w});
}

// maskApi counts positions in 32 bits: h * w beyond 2^32 - 1 wrapped around silently.
TEST(Rle, SizesBeyond32BitPositionsAreErrors) {
  using ::instseg::testing::input_error_of;
  using ::testing::HasSubstr;
  const std::string too_big = "mask size [65536, 65536] has more than 2^32 - 1 pixels";
  EXPECT_THAT(input_error_of([] { from_polygon({1, 1, 70000, 1, 1, 70000}, 65536, 65536); }), HasSubstr(too_big));
  EXPECT_THAT(input_error_of([] { from_uncompressed({UINT32_MAX, UINT32_MAX, 2}, 65536, 65536); }), HasSubstr(too_big));
  EXPECT_THAT(input_error_of([] { decode(Rle{65536, 65536, {0}}); }), HasSubstr(too_big));
  EXPECT_THAT(input_error_of([] { encode(nullptr, 65536, 65536); }), HasSubstr(too_big));
  EXPECT_THAT(input_error_of([] { from_string("0", 65536, 65536); }), HasSubstr(too_big));
  // The largest size that fits is accepted.
  EXPECT_EQ(area(from_polygon({0, 0, 2, 0, 2, 2, 0, 2}, 65535, 65537)), 4u);
}

}  // namespace
}  // namespace instseg::coco
