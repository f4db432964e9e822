#pragma once
// Typed fields of COCO entries read with a JsonReader. A value of the wrong type or range is a
// FieldError kept in its Field, so an entry reports its errors in a fixed field order whatever the
// key order of the file; the caller turns it into an InputError naming the file, the entry
// ("annotations[12]") and the field. Shared by the dataset and results readers.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coco/json_reader.h"
#include "instseg/coco/dataset.h"

namespace instseg::coco::detail {

// One entry of a top-level array of a file, for messages: "<file>: <array>[<index>]".
struct Entry {
  const std::string& file;
  const char* array;  // "annotations", "images", "results", ...
  size_t index;
};

[[noreturn]] void fail(const Entry& at, const std::string& field, const std::string& what);

// What is wrong with a value; `field` may be deeper than the key ("segmentation.size").
struct FieldError {
  std::string field;
  std::string what;
};

// One field of an entry: absent, read, or wrong (then `error` says why).
template <typename T>
struct Field {
  bool present = false;
  T value{};
  std::optional<FieldError> error;

  // The value; fail()s naming the entry when the field is missing or was wrong.
  const T& get(const Entry& at, const char* name) const {
    if (error) fail(at, error->field, error->what);
    if (!present) fail(at, name, "missing");
    return value;
  }
};

// Reads the next value into `field` with read(in), which throws FieldError when the value does
// not fit; then the error is kept and the rest of the value skipped (syntax errors still throw).
template <typename T, typename Read>
void read_field(JsonReader& in, Field<T>& field, Read&& read) {
  const JsonReader::Mark mark = in.mark();
  field.present = true;
  field.error.reset();
  try {
    field.value = read(in);
  } catch (FieldError& e) {
    field.error = std::move(e);
    in.reset(mark);
    in.skip();
  }
}

// Each throws FieldError naming `name`.
int64_t read_int(JsonReader& in, const char* name);
double read_finite(JsonReader& in, const char* name);  // a finite number (integers accepted)
std::string read_string(JsonReader& in, const char* name);
bool read_crowd(JsonReader& in);  // iscrowd: 0, 1, true or false
// [x, y, width, height]: 4 finite numbers, width and height >= 0.
std::array<double, 4> read_box(JsonReader& in, const char* name);

// A "segmentation" as written, checked for form but not yet against its image (which the entry
// may name after it): polygons, or an RLE {size, counts} whose compressed counts are kept as text.
struct SegmentationValue {
  Segmentation::Kind kind = Segmentation::Kind::kNone;
  std::vector<std::vector<double>> polygons;
  uint64_t h = 0, w = 0;
  bool has_counts = false, counts_is_text = false;
  // Into the file's text, or into the reader's buffer when the string had escapes: valid until
  // the reader's next string() (entries read no other string after their segmentation).
  std::string_view counts_text;
  size_t counts_offset = 0;                // of the counts string's opening quote in the text
  std::vector<uint32_t> runs;              // uncompressed counts
  std::optional<FieldError> counts_error;  // reported after the size check
};
SegmentationValue read_segmentation(JsonReader& in);
// The segmentation of an image of height h and width w (RLE counts decoded); throws FieldError.
Segmentation to_segmentation(SegmentationValue&& value, uint32_t h, uint32_t w);
// An RLE segmentation's mask for an image of height h and width w, into `out` (memory reused);
// throws FieldError.
void decode_rle(const SegmentationValue& value, uint32_t h, uint32_t w, Rle& out);

// Calls read(reader, index) for every element of a top-level array, on all cores in chunks; each
// reader covers one element, which read() must consume. The error of the lowest index wins.
void for_each_entry(std::string_view text, const std::vector<Span>& elements, const std::string& file,
                    const std::function<void(JsonReader&, size_t)>& read);

}  // namespace instseg::coco::detail
