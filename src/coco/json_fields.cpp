#include "coco/json_fields.h"

#include <cmath>

#include "instseg/common/parallel_for.h"
#include "instseg/errors.h"

namespace instseg::coco::detail {
namespace {

// The value's text for "got ..." in messages; skips it.
std::string skip_excerpt(JsonReader& in) {
  in.peek();
  const size_t begin = in.offset();
  in.skip();
  return in.excerpt(begin, in.offset());
}

// A JSON number that is a non-negative integer up to `max`, else nothing (the value is consumed).
std::optional<uint64_t> read_count(JsonReader& in, uint64_t max) {
  if (in.peek() != JsonType::kNumber) {
    in.skip();
    return std::nullopt;
  }
  const JsonNumber n = in.number();
  if (n.kind != JsonNumber::Kind::kUnsigned || n.u > max) return std::nullopt;
  return n.u;
}

}  // namespace

void fail(const Entry& at, const std::string& field, const std::string& what) {
  throw InputError(at.file + ": " + at.array + "[" + std::to_string(at.index) + "]" +
                   (field.empty() ? "" : "." + field) + ": " + what);
}

int64_t read_int(JsonReader& in, const char* name) {
  const JsonReader::Mark mark = in.mark();
  if (in.peek() == JsonType::kNumber) {
    const JsonNumber n = in.number();
    // Beyond int64 (only an unsigned one can be) is not an id COCO tools could hold either.
    if (n.kind == JsonNumber::Kind::kSigned || (n.kind == JsonNumber::Kind::kUnsigned && n.u <= uint64_t(INT64_MAX))) {
      return n.i;
    }
  }
  in.reset(mark);
  throw FieldError{name, "expected an integer, got " + skip_excerpt(in)};
}

double read_finite(JsonReader& in, const char* name) {
  const JsonReader::Mark mark = in.mark();
  if (in.peek() != JsonType::kNumber) throw FieldError{name, "expected a number, got " + skip_excerpt(in)};
  const double value = in.number().value;
  if (!std::isfinite(value)) {
    in.reset(mark);
    throw FieldError{name, "not a finite number"};
  }
  return value;
}

std::string read_string(JsonReader& in, const char* name) {
  if (in.peek() != JsonType::kString) throw FieldError{name, "expected a string"};
  std::string scratch;
  return std::string(in.string(scratch));
}

bool read_crowd(JsonReader& in) {
  const JsonReader::Mark mark = in.mark();
  const JsonType type = in.peek();
  if (type == JsonType::kBool) return in.boolean();
  if (type == JsonType::kNumber) {
    const JsonNumber n = in.number();
    if (n.is_integer() && (n.i == 0 || n.i == 1) && (n.kind == JsonNumber::Kind::kSigned || n.u <= 1)) return n.i == 1;
  }
  in.reset(mark);
  throw FieldError{"iscrowd", "expected 0 or 1, got " + skip_excerpt(in)};
}

std::array<double, 4> read_box(JsonReader& in, const char* name) {
  const FieldError shape{name, "expected 4 numbers [x, y, width, height]"};
  if (in.peek() != JsonType::kArray) throw shape;
  std::array<double, 4> box{};
  size_t n = 0;
  in.begin_array();
  while (in.next_element()) {
    if (n == 4 || in.peek() != JsonType::kNumber) throw shape;
    box[n++] = in.number().value;
  }
  if (n != 4) throw shape;
  for (double v : box) {
    if (!std::isfinite(v)) throw FieldError{name, "not finite"};
  }
  if (box[2] < 0 || box[3] < 0) throw FieldError{name, "negative width or height"};
  return box;
}

SegmentationValue read_segmentation(JsonReader& in) {
  SegmentationValue s;
  const JsonType type = in.peek();
  if (type == JsonType::kArray) {
    // Polygons: pycocotools decides on the first one (4 values: a box, fewer: unsupported).
    s.kind = Segmentation::Kind::kPolygons;
    in.begin_array();
    while (in.next_element()) {
      const size_t p = s.polygons.size();
      const auto field = [p] { return "segmentation[" + std::to_string(p) + "]"; };
      if (in.peek() != JsonType::kArray) throw FieldError{field(), "expected a list of numbers [x0, y0, x1, y1, ...]"};
      std::vector<double>& xy = s.polygons.emplace_back();
      xy.reserve(in.list_size_hint());  // one allocation: the GT holds tens of thousands
      in.begin_array();
      while (in.next_element()) {
        // Checked here, with the coordinate's place in the file: from_polygon would only give
        // its index within the polygon.
        const auto coordinate = [&] { return field() + "[" + std::to_string(xy.size()) + "]"; };
        if (in.peek() != JsonType::kNumber) throw FieldError{coordinate(), "expected a number, got " + skip_excerpt(in)};
        const size_t begin = in.offset();
        const double v = in.number().value;
        if (!std::isfinite(v)) {
          throw FieldError{coordinate(), "not a finite number (" + in.excerpt(begin, in.offset()) + ")"};
        }
        if (std::fabs(v) > kMaxPolygonCoordinate) {
          throw FieldError{coordinate(), in.excerpt(begin, in.offset()) + " is beyond +-" +
                                             std::to_string(int64_t(kMaxPolygonCoordinate)) +
                                             " pixels (the limit of polygon coordinates)"};
        }
        xy.push_back(v);
      }
      if (xy.size() % 2 != 0) throw FieldError{field(), "odd number of coordinates"};
      if (p == 0 && xy.size() < 6) {
        throw FieldError{field(), "a polygon needs at least 3 points (pycocotools rejects fewer on the first)"};
      }
    }
    if (s.polygons.empty()) throw FieldError{"segmentation", "empty polygon list"};
    return s;
  }
  if (type != JsonType::kObject) throw FieldError{"segmentation", "expected polygons or an RLE object {size, counts}"};
  s.kind = Segmentation::Kind::kRle;
  const FieldError bad_size{"segmentation.size", "expected [height, width]"};
  const FieldError bad_runs{"segmentation.counts", "uncompressed runs must be non-negative integers"};
  // A size of the wrong form is reported here, counts errors only after the size was compared
  // with the image's (to_segmentation), whatever the key order.
  std::optional<FieldError> size_error = bad_size;
  in.begin_object();
  for (std::string_view key; in.next_key(key);) {
    if (key == "size") {
      size_error.reset();
      if (in.peek() != JsonType::kArray) {
        in.skip();
        size_error = bad_size;
        continue;
      }
      size_t n = 0;
      in.begin_array();
      while (in.next_element()) {
        const auto v = read_count(in, UINT64_MAX);
        if (!v || n >= 2) size_error = bad_size;
        if (v && n < 2) (n == 0 ? s.h : s.w) = *v;
        ++n;
      }
      if (n != 2) size_error = bad_size;
    } else if (key == "counts") {
      s.has_counts = true;
      s.counts_error.reset();
      s.runs.clear();
      const JsonType counts = in.peek();
      if (counts == JsonType::kString) {
        s.counts_is_text = true;
        s.counts_offset = in.offset();
        s.counts_text = in.string();
      } else if (counts == JsonType::kArray) {
        s.counts_is_text = false;
        in.begin_array();
        while (in.next_element()) {
          const auto v = read_count(in, UINT32_MAX);
          if (!v) s.counts_error = bad_runs;
          s.runs.push_back(uint32_t(v.value_or(0)));
        }
      } else {
        in.skip();
        s.counts_error = FieldError{"segmentation.counts", "expected a string (compressed RLE) or a list of runs"};
      }
    } else {
      in.skip();
    }
  }
  if (size_error) throw *size_error;
  return s;
}

Segmentation to_segmentation(SegmentationValue&& value, uint32_t h, uint32_t w) {
  Segmentation segmentation;
  segmentation.kind = value.kind;
  if (value.kind == Segmentation::Kind::kPolygons) {
    segmentation.polygons = std::move(value.polygons);
  } else {
    decode_rle(value, h, w, segmentation.rle);
  }
  return segmentation;
}

void decode_rle(const SegmentationValue& value, uint32_t h, uint32_t w, Rle& out) {
  if (value.h != h || value.w != w) {
    throw FieldError{"segmentation.size", "[" + std::to_string(value.h) + ", " + std::to_string(value.w) +
                                              "] differs from the image size [" + std::to_string(h) + ", " +
                                              std::to_string(w) + "]"};
  }
  if (!value.has_counts) throw FieldError{"segmentation.counts", "missing"};
  if (value.counts_error) throw *value.counts_error;
  try {
    if (value.counts_is_text) {
      from_string(value.counts_text.data(), value.counts_text.size(), h, w, out);
    } else {
      out = from_uncompressed(value.runs, h, w);
    }
  } catch (const InputError& e) {
    throw FieldError{"segmentation.counts", e.what()};
  }
}

void for_each_entry(std::string_view text, const std::vector<Span>& elements, const std::string& file,
                    const std::function<void(JsonReader&, size_t)>& read) {
  constexpr size_t kChunk = 256;
  const size_t chunks = (elements.size() + kChunk - 1) / kChunk;
  instseg::parallel_for(chunks, instseg::resolve_threads(0), [&](size_t c) {
    JsonReader in(text, file);  // one per chunk: its buffers serve all the chunk's entries
    for (size_t i = c * kChunk; i < std::min(elements.size(), (c + 1) * kChunk); ++i) {
      in.restart(elements[i].begin, elements[i].end);
      read(in, i);
      in.finish();
    }
  });
}

}  // namespace instseg::coco::detail
