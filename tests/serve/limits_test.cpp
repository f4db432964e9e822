// The server's request checks called directly (src/serve/limits.h): query options, media types,
// the header pixel limit and the bearer token, each refusal with its status and a message naming
// what was wrong.
#include "serve/limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>

namespace instseg::serve {
namespace {

using ::testing::HasSubstr;

// The status and message of the HttpError `f` throws; {0, ""} when it throws none.
std::pair<int, std::string> refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const HttpError& e) {
    return {e.status, e.what()};
  }
  return {0, ""};
}

std::string le32(uint32_t v) {
  return std::string{char(v & 0xFF), char((v >> 8) & 0xFF), char((v >> 16) & 0xFF), char(v >> 24)};
}

// A little-endian TIFF header whose first IFD holds ImageWidth and ImageLength as LONGs.
std::string tiff_header(uint32_t width, uint32_t height) {
  const std::string two("\x02\x00", 2), width_tag("\x00\x01\x04\x00", 4), height_tag("\x01\x01\x04\x00", 4);
  return std::string("II*\0", 4) + le32(8) + two + width_tag + le32(1) + le32(width) + height_tag + le32(1) +
         le32(height) + le32(0);
}

TEST(ServeRequestLimits, PixelLimitHoldsForEveryDeclaredSize) {
  EXPECT_EQ(refusal([] { check_image_pixels(tiff_header(100, 100), 10000); }).first, 0);
  const auto over = refusal([] { check_image_pixels(tiff_header(101, 100), 10000); });
  EXPECT_EQ(over.first, 413);
  EXPECT_THAT(over.second, HasSubstr("image of 101 x 100 = 10100 pixels is over --max-image-pixels 10000"));
  // Sides of 2^32 - 1: the product does not fit in 64-bit integers; it is still over the limit.
  const auto widest = refusal([] { check_image_pixels(tiff_header(0xFFFFFFFFu, 0xFFFFFFFFu), 25000000); });
  EXPECT_EQ(widest.first, 413);
  EXPECT_THAT(widest.second, HasSubstr("4294967295 x 4294967295"));
  // Bytes without a parsed header are left to the decoder.
  EXPECT_EQ(refusal([] { check_image_pixels("no header here", 1); }).first, 0);
}

TEST(ServeRequestLimits, QueryOptionsAreCheckedAndNamed) {
  using Params = std::multimap<std::string, std::string>;
  const PredictQuery q = parse_predict_query({{"score_thresh", "0.25"}, {"mask_format", "polygon"},
                                              {"max_detections", "7"}});
  EXPECT_EQ(q.score_thresh, 0.25);
  EXPECT_EQ(q.mask_format, MaskFormat::kPolygon);
  EXPECT_EQ(q.max_detections, 7);
  const PredictQuery none = parse_predict_query({});
  EXPECT_FALSE(none.score_thresh);
  EXPECT_EQ(none.mask_format, MaskFormat::kRle);
  const std::pair<Params, std::string> bad[] = {
      {{{"score_thresh", "1.5"}}, "score_thresh=1.5: must be a number in [0, 1]"},
      {{{"score_thresh", "0.5x"}}, "score_thresh=0.5x"},
      {{{"score_thresh", "nan"}}, "score_thresh=nan"},
      {{{"max_detections", "-1"}}, "max_detections=-1: must be an integer in 0..100000"},
      {{{"max_detections", "99999999999999999999"}}, "max_detections=99999999999999999999"},
      {{{"mask_format", "png"}}, "mask_format=png: must be rle, polygon or none"},
      {{{"max_detections", "1"}, {"max_detections", "2"}}, "max_detections given more than once"},
      {{{"threshold", "0.5"}}, "unknown query parameter threshold"},
  };
  for (const auto& [params, named] : bad) {
    SCOPED_TRACE(named);
    const auto r = refusal([&] { parse_predict_query(params); });
    EXPECT_EQ(r.first, 400);
    EXPECT_THAT(r.second, HasSubstr(named));
  }
}

TEST(ServeRequestLimits, MediaTypesAndTokens) {
  const std::string body = "bytes", part = "part";
  EXPECT_EQ(&image_bytes("image/PNG; charset=x", body, nullptr, false), &body);
  EXPECT_EQ(&image_bytes("multipart/form-data; boundary=b", body, &part, true), &part);
  EXPECT_EQ(refusal([&] { image_bytes("text/plain", body, nullptr, false); }).first, 415);
  EXPECT_EQ(refusal([&] { image_bytes("", body, nullptr, false); }).first, 415);
  EXPECT_EQ(refusal([&] { image_bytes("multipart/form-data; boundary=b", body, nullptr, true); }).first, 400);
  EXPECT_EQ(refusal([] { image_bytes("image/jpeg", "", nullptr, false); }).first, 400);

  EXPECT_EQ(refusal([] { check_bearer_token("Bearer t0ken", "t0ken"); }).first, 0);
  for (const std::string wrong : {"", "Bearer t0ke", "Bearer t0kenn", "Bearer T0ken", "t0ken", "Basic t0ken"}) {
    SCOPED_TRACE(wrong);
    EXPECT_EQ(refusal([&] { check_bearer_token(wrong, "t0ken"); }).first, 401);
  }
}

}  // namespace
}  // namespace instseg::serve
