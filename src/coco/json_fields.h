#pragma once
// Typed field access on nlohmann::json entries, throwing InputError that names the file, the
// entry ("annotations[12]") and the field. Shared by the dataset and results readers.
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "instseg/coco/dataset.h"

namespace instseg::coco::detail {

// One entry of a top-level array of a file, for messages: "<file>: <array>[<index>]".
struct Entry {
  const std::string& file;
  const char* array;  // "annotations", "images", "results", ...
  size_t index;
};

[[noreturn]] void fail(const Entry& at, const std::string& field, const std::string& what);

const nlohmann::json& require(const nlohmann::json& object, const char* field, const Entry& at);
int64_t get_int(const nlohmann::json& object, const char* field, const Entry& at);
// A finite number (integers accepted).
double get_number(const nlohmann::json& object, const char* field, const Entry& at);
// [x, y, width, height]: 4 finite numbers, width and height >= 0.
std::array<double, 4> get_box(const nlohmann::json& object, const char* field, const Entry& at);
// A COCO segmentation (polygon list or RLE object) for an image of height h and width w.
Segmentation get_segmentation(const nlohmann::json& value, uint32_t h, uint32_t w, const Entry& at);
// Reads a whole file into memory; InputError naming the path when it cannot.
std::string read_text(const std::string& path);
// Parses JSON text, InputError "<file>: not valid JSON: ..." when it is not.
nlohmann::json parse_json(const std::string& text, const std::string& file);

}  // namespace instseg::coco::detail

namespace instseg::coco::detail {

// Byte ranges [begin, end) of JSON values inside a text, found by a scan that tracks strings and
// nesting only, so large files can be parsed element by element on several threads.
struct Span {
  size_t begin = 0, end = 0;
};
// The elements of the array spanning `array`, or false when the text does not scan as one.
bool split_array(const std::string& text, Span array, std::vector<Span>& elements);
// The top-level object's values by key, or false when the text does not scan as an object.
bool split_object(const std::string& text, std::vector<std::pair<std::string, Span>>& members);
// Parses one span; InputError "<file>: <array>[<index>]: not valid JSON: ..." when it is not.
nlohmann::json parse_span(const std::string& text, Span span, const Entry& at);
// Calls convert(json, index) for every element of `elements`, on all cores, in chunks; the error
// of the lowest index wins.
void for_each_element(const std::string& text, const std::vector<Span>& elements,
                      const std::function<void(const nlohmann::json&, size_t)>& convert,
                      const std::string& file, const char* array);

}  // namespace instseg::coco::detail
