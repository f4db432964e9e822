#include "coco/json_writer.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <system_error>

#include "coco/json_reader.h"

namespace instseg::coco::detail {

void append_number(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  if (std::signbit(value)) {
    out += '-';
    value = -value;
  }
  if (value == 0) {
    out += "0.0";
    return;
  }
  // Shortest round-trip digits in scientific form: "d[.ddd]e[+-]xx" (at most 17 digits).
  char buffer[32];
  const char* const end = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific).ptr;
  char digits[24];
  int k = 0;
  const char* p = buffer;
  for (; *p != 'e'; ++p) {
    if (*p != '.') digits[k++] = *p;
  }
  const bool negative_exponent = p[1] == '-';
  int exponent = 0;
  std::from_chars(p + 2, end, exponent);
  if (negative_exponent) exponent = -exponent;
  // value = 0.digits * 10^n. The layout of nlohmann's format_buffer (min_exp -4, max_exp 15).
  const int n = exponent + 1;
  if (k <= n && n <= 15) {
    out.append(digits, size_t(k));
    out.append(size_t(n - k), '0');
    out += ".0";
  } else if (0 < n && n <= 15) {
    out.append(digits, size_t(n));
    out += '.';
    out.append(digits + n, size_t(k - n));
  } else if (-4 < n && n <= 0) {
    out += "0.";
    out.append(size_t(-n), '0');
    out.append(digits, size_t(k));
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out.append(digits + 1, size_t(k - 1));
    }
    out += exponent < 0 ? "e-" : "e+";
    if (std::abs(exponent) < 10) out += '0';  // at least two exponent digits
    append_integer(out, std::abs(exponent));
  }
}

void append_integer(std::string& out, int64_t value) {
  char buffer[24];
  out.append(buffer, std::to_chars(buffer, buffer + sizeof buffer, value).ptr);
}

bool append_string(std::string& out, std::string_view text) {
  const size_t start = out.size();
  out += '"';
  const char* p = text.data();
  const char* const end = p + text.size();
  while (p < end) {
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x80) {
      const size_t n = utf8_length(p, end);
      if (n == 0) {
        out.resize(start);
        return false;
      }
      out.append(p, n);
      p += n;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += char(c);
        }
    }
    ++p;
  }
  out += '"';
  return true;
}

}  // namespace instseg::coco::detail
