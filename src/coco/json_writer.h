#pragma once
// Appending JSON values to text, for the COCO writers (instances, results). The layout is
// nlohmann::json's compact dump(), which wrote these files before: numbers as below, strings
// escaped as nlohmann escapes them, keys written by the callers in sorted order (nlohmann's
// objects are sorted maps). A hand-written writer: a results file can hold millions of entries.
// Internal to instseg_core.
#include <cstdint>
#include <string>
#include <string_view>

namespace instseg::coco::detail {

// The shortest text that reads back as the same double, the nearest of those (std::to_chars; as
// Python's repr), laid out as nlohmann lays out doubles: positional between 1e-4 and 1e15 with
// ".0" on integral values ("2.0", "0.0001", "123456.0"), scientific outside ("1e-05", "1e+15"),
// "-0.0", and null for NaN and infinities (JSON has no token for them). nlohmann's own digits
// (Grisu2) are a shortest text but not always the nearest: a few values in a hundred end one
// digit apart, the same double.
void append_number(std::string& out, double value);
void append_integer(std::string& out, int64_t value);
// A quoted string: '"', '\\' and control characters escaped (\n, \t, ... or \u00XX), everything
// else as is. Returns false, appending nothing, when `text` is not well-formed UTF-8 (a JSON file
// must be; pycocotools' json.load would refuse it).
bool append_string(std::string& out, std::string_view text);

}  // namespace instseg::coco::detail
