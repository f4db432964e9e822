#include "coco/json_fields.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "coco/parallel_for.h"
#include "instseg/errors.h"

namespace instseg::coco::detail {

using nlohmann::json;

void fail(const Entry& at, const std::string& field, const std::string& what) {
  throw InputError(at.file + ": " + at.array + "[" + std::to_string(at.index) + "]" +
                   (field.empty() ? "" : "." + field) + ": " + what);
}

const json& require(const json& object, const char* field, const Entry& at) {
  const auto it = object.find(field);
  if (it == object.end()) fail(at, field, "missing");
  return *it;
}

int64_t get_int(const json& object, const char* field, const Entry& at) {
  const json& value = require(object, field, at);
  if (!value.is_number_integer()) fail(at, field, "expected an integer, got " + value.dump());
  return value.get<int64_t>();
}

double get_number(const json& object, const char* field, const Entry& at) {
  const json& value = require(object, field, at);
  if (!value.is_number()) fail(at, field, "expected a number, got " + value.dump());
  const double number = value.get<double>();
  if (!std::isfinite(number)) fail(at, field, "not a finite number");
  return number;
}

std::array<double, 4> get_box(const json& object, const char* field, const Entry& at) {
  const json& value = require(object, field, at);
  if (!value.is_array() || value.size() != 4) fail(at, field, "expected 4 numbers [x, y, width, height]");
  std::array<double, 4> box{};
  for (size_t i = 0; i < 4; ++i) {
    if (!value[i].is_number()) fail(at, field, "expected 4 numbers [x, y, width, height]");
    box[i] = value[i].get<double>();
    if (!std::isfinite(box[i])) fail(at, field, "not finite");
  }
  if (box[2] < 0 || box[3] < 0) fail(at, field, "negative width or height");
  return box;
}

Segmentation get_segmentation(const json& value, uint32_t h, uint32_t w, const Entry& at) {
  Segmentation segmentation;
  if (value.is_array()) {
    // Polygons: pycocotools decides on the first one (4 values: a box, fewer: unsupported).
    if (value.empty()) fail(at, "segmentation", "empty polygon list");
    segmentation.kind = Segmentation::Kind::kPolygons;
    for (size_t p = 0; p < value.size(); ++p) {
      const std::string field = "segmentation[" + std::to_string(p) + "]";
      const json& polygon = value[p];
      if (!polygon.is_array()) fail(at, field, "expected a list of numbers [x0, y0, x1, y1, ...]");
      if (polygon.size() % 2 != 0) fail(at, field, "odd number of coordinates");
      if (p == 0 && polygon.size() < 6) {
        fail(at, field, "a polygon needs at least 3 points (pycocotools rejects fewer on the first)");
      }
      std::vector<double> xy;
      xy.reserve(polygon.size());
      for (const json& v : polygon) {
        if (!v.is_number() || !std::isfinite(v.get<double>())) fail(at, field, "coordinates must be finite numbers");
        xy.push_back(v.get<double>());
      }
      segmentation.polygons.push_back(std::move(xy));
    }
    return segmentation;
  }
  if (!value.is_object()) fail(at, "segmentation", "expected polygons or an RLE object {size, counts}");
  const json* size = value.contains("size") ? &value["size"] : nullptr;
  if (!size || !size->is_array() || size->size() != 2 || !(*size)[0].is_number_unsigned() ||
      !(*size)[1].is_number_unsigned()) {
    fail(at, "segmentation.size", "expected [height, width]");
  }
  const auto rh = (*size)[0].get<uint64_t>(), rw = (*size)[1].get<uint64_t>();
  if (rh != h || rw != w) {
    fail(at, "segmentation.size", "[" + std::to_string(rh) + ", " + std::to_string(rw) +
                                      "] differs from the image size [" + std::to_string(h) + ", " +
                                      std::to_string(w) + "]");
  }
  const auto counts = value.find("counts");
  if (counts == value.end()) fail(at, "segmentation.counts", "missing");
  segmentation.kind = Segmentation::Kind::kRle;
  try {
    if (counts->is_string()) {
      segmentation.rle = from_string(counts->get_ref<const std::string&>(), h, w);
    } else if (counts->is_array()) {
      std::vector<uint32_t> runs;
      runs.reserve(counts->size());
      for (const json& c : *counts) {
        if (!c.is_number_unsigned() || c.get<uint64_t>() > UINT32_MAX) {
          fail(at, "segmentation.counts", "uncompressed runs must be non-negative integers");
        }
        runs.push_back(c.get<uint32_t>());
      }
      segmentation.rle = from_uncompressed(runs, h, w);
    } else {
      fail(at, "segmentation.counts", "expected a string (compressed RLE) or a list of runs");
    }
  } catch (const InputError& e) {
    if (std::string(e.what()).rfind(at.file + ":", 0) == 0) throw;
    fail(at, "segmentation.counts", e.what());
  }
  return segmentation;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw InputError(path + ": read failed");
  return std::move(buffer).str();
}

json parse_json(const std::string& text, const std::string& file) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // Python's json module writes NaN / Infinity for non-finite floats; say so, it is the usual cause.
    const bool non_finite = text.find("NaN") != std::string::npos || text.find("Infinity") != std::string::npos;
    throw InputError(file + ": not valid JSON: " + e.what() +
                     (non_finite ? " (NaN / Infinity are not JSON numbers: scores and boxes must be finite)" : ""));
  }
}

}  // namespace instseg::coco::detail

namespace instseg::coco::detail {
namespace {

size_t skip_space(const std::string& s, size_t p, size_t end) {
  while (p < end && (s[p] == ' ' || s[p] == '\n' || s[p] == '\r' || s[p] == '\t')) ++p;
  return p;
}

// End of the value starting at p (p itself when it does not scan).
size_t skip_value(const std::string& s, size_t p, size_t end) {
  int depth = 0;
  const size_t start = p;
  while (p < end) {
    const char c = s[p];
    if (c == '"') {
      for (++p; p < end && s[p] != '"'; ++p) {
        if (s[p] == '\\') ++p;
      }
      if (p >= end) return start;
      ++p;
    } else if (c == '[' || c == '{') {
      ++depth;
      ++p;
    } else if (c == ']' || c == '}') {
      if (depth == 0) return p;  // end of an enclosing container after a scalar
      --depth;
      ++p;
    } else if (depth == 0 && (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t')) {
      return p;
    } else {
      ++p;
    }
    if (depth == 0 && (c == ']' || c == '}' || c == '"')) return p;
  }
  return depth == 0 ? p : start;
}

}  // namespace

bool split_array(const std::string& text, Span array, std::vector<Span>& elements) {
  size_t p = skip_space(text, array.begin, array.end);
  if (p >= array.end || text[p] != '[') return false;
  p = skip_space(text, p + 1, array.end);
  if (p < array.end && text[p] == ']') return true;
  while (p < array.end) {
    const size_t e = skip_value(text, p, array.end);
    if (e == p) return false;
    elements.push_back({p, e});
    p = skip_space(text, e, array.end);
    if (p < array.end && text[p] == ']') return true;
    if (p >= array.end || text[p] != ',') return false;
    p = skip_space(text, p + 1, array.end);
  }
  return false;
}

bool split_object(const std::string& text, std::vector<std::pair<std::string, Span>>& members) {
  size_t p = skip_space(text, 0, text.size());
  const size_t end = text.size();
  if (p >= end || text[p] != '{') return false;
  p = skip_space(text, p + 1, end);
  if (p < end && text[p] == '}') return true;
  while (p < end) {
    const size_t key_end = skip_value(text, p, end);
    if (key_end == p || text[p] != '"') return false;
    std::string key;
    try {
      key = json::parse(text.begin() + long(p), text.begin() + long(key_end)).get<std::string>();
    } catch (const json::exception&) {
      return false;
    }
    p = skip_space(text, key_end, end);
    if (p >= end || text[p] != ':') return false;
    p = skip_space(text, p + 1, end);
    const size_t value_end = skip_value(text, p, end);
    if (value_end == p) return false;
    members.emplace_back(std::move(key), Span{p, value_end});
    p = skip_space(text, value_end, end);
    if (p < end && text[p] == '}') return skip_space(text, p + 1, end) == end;
    if (p >= end || text[p] != ',') return false;
    p = skip_space(text, p + 1, end);
  }
  return false;
}

json parse_span(const std::string& text, Span span, const Entry& at) {
  try {
    return json::parse(text.begin() + long(span.begin), text.begin() + long(span.end));
  } catch (const json::parse_error& e) {
    const std::string part = text.substr(span.begin, span.end - span.begin);
    const bool non_finite = part.find("NaN") != std::string::npos || part.find("Infinity") != std::string::npos;
    fail(at, "", std::string("not valid JSON: ") + e.what() +
                     (non_finite ? " (NaN / Infinity are not JSON numbers: scores and boxes must be finite)" : ""));
  }
}

void for_each_element(const std::string& text, const std::vector<Span>& elements,
                      const std::function<void(const json&, size_t)>& convert, const std::string& file,
                      const char* array) {
  constexpr size_t kChunk = 512;
  const size_t chunks = (elements.size() + kChunk - 1) / kChunk;
  instseg::detail::parallel_for(chunks, instseg::detail::resolve_threads(0), [&](size_t c) {
    for (size_t i = c * kChunk; i < std::min(elements.size(), (c + 1) * kChunk); ++i) {
      convert(parse_span(text, elements[i], {file, array, i}), i);
    }
  });
}

}  // namespace instseg::coco::detail
