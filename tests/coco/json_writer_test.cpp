// The COCO writers' JSON values: numbers and strings as nlohmann::json wrote them (which wrote
// these files before), and every number reads back as the same double.
#include "coco/json_writer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace instseg::coco::detail {
namespace {

std::string number(double value) {
  std::string out;
  append_number(out, value);
  return out;
}

// Values on every branch of the layout: integral and not, each side of 1e-4 and 1e15, exponents
// of one, two and three digits, both signs, and the extremes.
const std::vector<double> kLayoutCases = {
    0.0, -0.0, 1.0, -2.0, 0.5, 12.25, 123456.0, 100000.0, 1e15, 999999999999999.0, 1e16, 1.5e16,
    123456789012345680.0, 0.1, 0.001, 0.0001, 0.0002, 0.00012, 0.00001, 1.5e-5, 1.234e-7, 3.3e-100,
    1e100, 0.123456789012345, 61.000003814697266, -47.25, 2.5e-300,
    std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
    std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::epsilon()};

TEST(JsonWriter, NumbersAreLaidOutAsNlohmannJson) {
  for (const double value : kLayoutCases) {
    SCOPED_TRACE(nlohmann::json(value).dump());
    EXPECT_EQ(number(value), nlohmann::json(value).dump());
  }
  EXPECT_EQ(number(std::nan("")), "null");
  EXPECT_EQ(number(std::numeric_limits<double>::infinity()), "null");
  EXPECT_EQ(number(-std::numeric_limits<double>::infinity()), "null");
}

// Random doubles of every magnitude and float32 values (boxes and scores come from float tensors):
// ours is the shortest text that reads back exactly, and of those the nearest to the value (as
// Python's repr). nlohmann's Grisu2 gives a shortest text but not always the nearest (804.62310791015625
// is "804.6231079101563" there, "...562" here and in Python), nor always the shortest: the same
// value, at most the last digit apart.
TEST(JsonWriter, NumbersReadBackExactlyAndAreNeverLongerThanNlohmanns) {
  std::mt19937_64 random(17);
  std::uniform_int_distribution<uint64_t> bits;
  std::uniform_real_distribution<float> pixels(-50.f, 2000.f);
  int same_text = 0, total = 0;
  for (int i = 0; i < 20000; ++i) {
    double value;
    if (i % 2) {
      value = double(pixels(random));
    } else {
      const uint64_t b = bits(random);
      std::memcpy(&value, &b, sizeof value);
      if (!std::isfinite(value)) continue;
    }
    const std::string ours = number(value), theirs = nlohmann::json(value).dump();
    ASSERT_EQ(nlohmann::json::parse(ours).get<double>(), value) << ours;
    ASSERT_LE(ours.size(), theirs.size()) << ours << " vs " << theirs;
    ++total;
    if (ours == theirs) {
      ++same_text;
    } else if (ours.size() == theirs.size()) {
      const size_t last_digit = std::min(ours.find('e'), ours.size()) - 1;
      ASSERT_EQ(ours.substr(0, last_digit), theirs.substr(0, last_digit)) << ours << " vs " << theirs;
      ASSERT_EQ(ours.substr(last_digit + 1), theirs.substr(last_digit + 1)) << ours << " vs " << theirs;
    }
  }
  EXPECT_GT(same_text, total * 9 / 10);  // 96.5% with this seed
}

TEST(JsonWriter, IntegersAsWritten) {
  for (const int64_t value : {int64_t(0), int64_t(-7), int64_t(123456789012), std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max()}) {
    std::string out;
    append_integer(out, value);
    EXPECT_EQ(out, nlohmann::json(value).dump());
  }
}

TEST(JsonWriter, StringsAreEscapedAsNlohmannEscapesThem) {
  std::string every_ascii;
  for (int c = 1; c < 128; ++c) every_ascii += char(c);
  for (const std::string text : {std::string(), std::string("a.jpg"), every_ascii, std::string("\0x", 2),
                                 std::string("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::string("\\1\"")}) {
    std::string out = "prefix";
    ASSERT_TRUE(append_string(out, text));
    EXPECT_EQ(out, "prefix" + nlohmann::json(text).dump());
    EXPECT_EQ(nlohmann::json::parse(out.substr(6)).get<std::string>(), text);
  }
}

TEST(JsonWriter, MalformedUtf8IsRefusedAndNothingAppended) {
  // A lone continuation byte, a truncated sequence, an overlong '/', a surrogate, above U+10FFFF.
  for (const char* text : {"a\x80", "\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80"}) {
    std::string out = "[";
    EXPECT_FALSE(append_string(out, text)) << text;
    EXPECT_EQ(out, "[");
    EXPECT_THROW(nlohmann::json(std::string(text)).dump(), nlohmann::json::type_error);
  }
}

}  // namespace
}  // namespace instseg::coco::detail
