// The pull JSON parser (src/coco/json_reader.h). Each input is read twice, once value by value and
// once with skip(): both must accept or both refuse (InputError), since the COCO readers mix them.
// split_array, which the readers use to hand array elements to threads, runs on arrays too.
#include <cstdint>
#include <string>
#include <string_view>

#include "coco/json_reader.h"
#include "fuzz_util.h"
#include "instseg/errors.h"

namespace {

using instseg::coco::detail::JsonReader;
using instseg::coco::detail::JsonType;

// Reads one value with the typed calls; deep values fall back to skip() (the readers' own nesting
// is shallow, and this walker recurses).
void walk(JsonReader& in, int depth) {
  if (depth > 24) return in.skip();
  switch (in.peek()) {
    case JsonType::kNull: in.null(); break;
    case JsonType::kBool: in.boolean(); break;
    case JsonType::kNumber: {
      const auto n = in.number();
      if (n.kind == instseg::coco::detail::JsonNumber::Kind::kSigned) FUZZ_CHECK(n.i <= 0);  // "-0" is a signed zero
      break;
    }
    case JsonType::kString: in.string(); break;
    case JsonType::kArray: {
      in.list_size_hint();
      in.begin_array();
      while (in.next_element()) walk(in, depth + 1);
      break;
    }
    case JsonType::kObject: {
      in.begin_object();
      for (std::string_view key; in.next_key(key);) walk(in, depth + 1);
      break;
    }
  }
}

}  // namespace

using instseg::fuzz::accepted;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file = "fuzz.json";
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool walked = accepted([&] {
    JsonReader in(text, file);
    walk(in, 0);
    in.finish();
  });
  const bool skipped = accepted([&] {
    JsonReader in(text, file);
    in.skip();
    in.finish();
  });
  FUZZ_CHECK(walked == skipped);
  // A valid document that is an array splits into valid elements.
  const bool split = accepted([&] {
    size_t begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string_view::npos || text[begin] != '[') return;
    size_t end = 0;
    const auto spans = instseg::coco::detail::split_array(text, begin, file, end);
    FUZZ_CHECK(end <= size);
    for (const auto& span : spans) {
      FUZZ_CHECK(span.begin <= span.end && span.end <= end);
      JsonReader element(text, file, span.begin, span.end);
      element.skip();
      element.finish();
    }
  });
  FUZZ_CHECK(split || !walked);
  return 0;
}
