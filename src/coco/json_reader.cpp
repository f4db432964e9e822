#include "coco/json_reader.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "instseg/errors.h"

namespace instseg::coco::detail {
namespace {

// Python's json module writes NaN and Infinity for non-finite floats: the usual cause of 'N' / 'I'.
constexpr const char* kNonFiniteHint =
    "unexpected 'N' or 'I' (NaN / Infinity are not JSON numbers: scores and boxes must be finite)";

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

// A byte for a message: 'x' when printable ASCII, else its hex value (a raw 0xEF byte would be
// one third of a character in the terminal).
std::string describe_byte(const char* p, const char* end) {
  const auto c = static_cast<unsigned char>(*p);
  if (c >= 0x20 && c < 0x7F) return "'" + std::string(1, char(c)) + "'";
  static const char kHex[] = "0123456789ABCDEF";
  std::string s = std::string("byte 0x") + kHex[c >> 4] + kHex[c & 0xF];
  if (std::string_view(p, std::min<size_t>(size_t(end - p), 3)) == kByteOrderMark) {
    s += " (a UTF-8 byte-order mark, EF BB BF, is only allowed at the very start)";
  }
  return s;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// First byte in [p, end) that a string cannot copy through as is: '"', '\\', a control character
// or a non-ASCII byte. Eight bytes at a time: RLE counts strings are most of a results file.
const char* plain_run(const char* p, const char* end) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
  while (end - p >= 8) {
    uint64_t x;
    std::memcpy(&x, p, 8);
    const uint64_t quote = x ^ (kOnes * '"'), backslash = x ^ (kOnes * '\\');
    // (v - 1) & ~v has the high bit of the first zero byte set (later bytes may be false hits,
    // hence the first set bit only); x - 0x20 likewise flags the first byte below 0x20.
    const uint64_t hits = (((quote - kOnes) & ~quote) | ((backslash - kOnes) & ~backslash) |
                           ((x - kOnes * 0x20) & ~x) | x) & kHighs;
    if (hits) return p + __builtin_ctzll(hits) / 8;
    p += 8;
  }
#endif
  while (p < end) {
    const auto c = static_cast<unsigned char>(*p);
    if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) return p;
    ++p;
  }
  return p;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(uint32_t code, std::string& out) {
  if (code < 0x80) {
    out.push_back(char(code));
  } else if (code < 0x800) {
    out.push_back(char(0xC0 | (code >> 6)));
    out.push_back(char(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out.push_back(char(0xE0 | (code >> 12)));
    out.push_back(char(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(char(0x80 | (code & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (code >> 18)));
    out.push_back(char(0x80 | ((code >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((code >> 6) & 0x3F)));
    out.push_back(char(0x80 | (code & 0x3F)));
  }
}

}  // namespace

size_t utf8_length(const char* p, const char* end) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(p[i]); };
  const auto cont = [&](size_t i, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return p + i < end && b(i) >= lo && b(i) <= hi;
  };
  const unsigned c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c >= 0xE1 && c <= 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

const char* to_string(JsonType type) {
  switch (type) {
    case JsonType::kNull:
      return "null";
    case JsonType::kBool:
      return "a boolean";
    case JsonType::kNumber:
      return "a number";
    case JsonType::kString:
      return "a string";
    case JsonType::kArray:
      return "a list";
    case JsonType::kObject:
      return "an object";
  }
  return "?";
}

JsonReader::JsonReader(std::string_view text, const std::string& file, size_t begin, size_t end)
    : text_(text.data()),
      p_(text.data() + std::min(begin, text.size())),
      end_(text.data() + std::min(end, text.size())),
      file_(file) {
  // A UTF-8 byte-order mark opening the text is skipped: RFC 8259 lets parsers ignore it, Windows
  // tools write it, and nlohmann::json (configs, the training set's first read) skips it too.
  // pycocotools' json.load refuses it; accepting reads no file differently, it only reads more.
  if (begin == 0 && std::string_view(p_, size_t(end_ - p_)).substr(0, 3) == kByteOrderMark) p_ += 3;
}

void JsonReader::syntax_error(const std::string& what) const {
  throw InputError(file_ + ": not valid JSON at byte " + std::to_string(offset()) + ": " + what);
}

std::string JsonReader::excerpt(size_t begin, size_t end) const {
  constexpr size_t kMax = 40;
  std::string s(text_ + begin, std::min(end - begin, kMax));
  return end - begin > kMax ? s + "..." : s;
}

void JsonReader::skip_space() {
  while (p_ < end_ && is_space(*p_)) ++p_;
}

void JsonReader::expect(char c, const char* what) {
  skip_space();
  if (p_ == end_ || *p_ != c) syntax_error(std::string("expected ") + what);
  ++p_;
}

JsonType JsonReader::peek() {
  skip_space();
  if (p_ == end_) syntax_error("unexpected end of input, expected a value");
  switch (*p_) {
    case '{':
      return JsonType::kObject;
    case '[':
      return JsonType::kArray;
    case '"':
      return JsonType::kString;
    case 't':
    case 'f':
      return JsonType::kBool;
    case 'n':
      return JsonType::kNull;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
      return JsonType::kNumber;
    default:
      break;
  }
  if (*p_ == 'N' || *p_ == 'I') syntax_error(kNonFiniteHint);
  syntax_error("unexpected " + describe_byte(p_, end_) + ", expected a value");
}

void JsonReader::begin_object() {
  if (peek() != JsonType::kObject) syntax_error("expected an object");
  ++p_;
  first_ = true;
}

void JsonReader::begin_array() {
  if (peek() != JsonType::kArray) syntax_error("expected a list");
  ++p_;
  first_ = true;
}

bool JsonReader::next_key(std::string_view& key) {
  skip_space();
  if (p_ < end_ && *p_ == '}') {  // after '{' or after a member ("{"a": 1,}" fails below)
    ++p_;
    first_ = false;
    return false;
  }
  if (!first_) {
    if (p_ == end_ || *p_ != ',') syntax_error("expected ',' or '}'");
    ++p_;
    skip_space();
  }
  first_ = false;
  if (p_ == end_ || *p_ != '"') syntax_error("expected a key (a string)");
  ++p_;
  // Keys are short and plain in COCO files; an escaped one is decoded into key_scratch_.
  const char* q = plain_run(p_, end_);
  if (q < end_ && *q == '"') {
    key = std::string_view(p_, size_t(q - p_));
    p_ = q + 1;
  } else {
    key_scratch_.assign(p_, q);
    p_ = q;
    scan_string(&key_scratch_);
    key = key_scratch_;
  }
  expect(':', "':' after a key");
  return true;
}

bool JsonReader::next_element() {
  skip_space();
  if (first_) {
    first_ = false;
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return false;
    }
    return true;
  }
  if (p_ < end_ && *p_ == ']') {
    ++p_;
    return false;
  }
  if (p_ == end_ || *p_ != ',') syntax_error("expected ',' or ']'");
  ++p_;
  return true;
}

void JsonReader::scan_string(std::string* out) {
  const char* const start = p_;
  for (;;) {
    const char* q = plain_run(p_, end_);
    if (out) out->append(p_, q);
    p_ = q;
    if (p_ == end_) {
      p_ = start - 1;
      syntax_error("unterminated string");
    }
    const auto c = static_cast<unsigned char>(*p_);
    if (c == '"') {
      ++p_;
      return;
    }
    if (c < 0x20) syntax_error("control character in a string (it must be escaped)");
    if (c >= 0x80) {
      const size_t n = utf8_length(p_, end_);
      if (n == 0) syntax_error("invalid UTF-8 in a string");
      if (out) out->append(p_, n);
      p_ += n;
      continue;
    }
    // A backslash escape.
    if (end_ - p_ < 2) syntax_error("unterminated string");
    const char e = p_[1];
    char plain = 0;
    switch (e) {
      case '"':
      case '\\':
      case '/':
        plain = e;
        break;
      case 'b':
        plain = '\b';
        break;
      case 'f':
        plain = '\f';
        break;
      case 'n':
        plain = '\n';
        break;
      case 'r':
        plain = '\r';
        break;
      case 't':
        plain = '\t';
        break;
      case 'u':
        break;
      default:
        syntax_error(std::string("invalid escape '\\") + e + "' in a string");
    }
    if (plain) {
      if (out) out->push_back(plain);
      p_ += 2;
      continue;
    }
    const auto hex4 = [&](const char* h) {
      int value = 0;
      for (int i = 0; i < 4; ++i) {
        const int d = h + i < end_ ? hex_value(h[i]) : -1;
        if (d < 0) syntax_error("\\u must be followed by 4 hexadecimal digits");
        value = value * 16 + d;
      }
      return uint32_t(value);
    };
    uint32_t code = hex4(p_ + 2);
    p_ += 6;
    if (code >= 0xDC00 && code <= 0xDFFF) {
      p_ -= 6;
      syntax_error("\\u escape of a lone low surrogate");
    }
    if (code >= 0xD800 && code <= 0xDBFF) {
      // A high surrogate must be followed by a low one: together one code point above U+FFFF.
      if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u') {
        syntax_error("\\u escape of a high surrogate without its low surrogate");
      }
      const uint32_t low = hex4(p_ + 2);
      if (low < 0xDC00 || low > 0xDFFF) syntax_error("\\u escape of a high surrogate without its low surrogate");
      code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
      p_ += 6;
    }
    if (out) append_utf8(code, *out);
  }
}

std::string_view JsonReader::string(std::string& scratch) {
  if (peek() != JsonType::kString) syntax_error("expected a string");
  ++p_;
  const char* q = plain_run(p_, end_);
  if (q < end_ && *q == '"') {  // no escapes: the text itself
    const std::string_view view(p_, size_t(q - p_));
    p_ = q + 1;
    return view;
  }
  scratch.assign(p_, q);
  p_ = q;
  scan_string(&scratch);
  return scratch;
}

JsonNumber JsonReader::number() {
  if (peek() != JsonType::kNumber) syntax_error("expected a number");
  // JSON's grammar, checked here: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  const char* const start = p_;
  const bool negative = *p_ == '-';
  if (negative) ++p_;
  if (p_ < end_ && *p_ == 'I') syntax_error(kNonFiniteHint);
  if (p_ == end_ || !is_digit(*p_)) syntax_error("invalid number: a digit must follow '-'");
  uint64_t magnitude = 0;
  int digits = 0;
  if (*p_ == '0') {
    ++p_;
    if (p_ < end_ && is_digit(*p_)) syntax_error("invalid number: leading zero");
    digits = 1;
  } else {
    for (; p_ < end_ && is_digit(*p_); ++p_, ++digits) {
      if (digits < 19) magnitude = magnitude * 10 + uint64_t(*p_ - '0');
    }
  }
  bool integer = true;
  if (p_ < end_ && *p_ == '.') {
    integer = false;
    ++p_;
    if (p_ == end_ || !is_digit(*p_)) syntax_error("invalid number: a digit must follow '.'");
    while (p_ < end_ && is_digit(*p_)) ++p_;
  }
  if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
    integer = false;
    ++p_;
    if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
    if (p_ == end_ || !is_digit(*p_)) syntax_error("invalid number: a digit must follow the exponent");
    while (p_ < end_ && is_digit(*p_)) ++p_;
  }
  JsonNumber n;
  if (integer && digits == 20) {
    // Up to 18446744073709551615 still fits: finish the last digit with an overflow check.
    const uint64_t last = uint64_t(p_[-1] - '0');
    if (magnitude <= (UINT64_MAX - last) / 10) {
      magnitude = magnitude * 10 + last;
      digits = 19;
    }
  }
  if (integer && digits <= 19) {
    if (!negative) {
      n.kind = JsonNumber::Kind::kUnsigned;
      n.u = magnitude;
      n.i = magnitude <= uint64_t(INT64_MAX) ? int64_t(magnitude) : 0;
      n.value = double(magnitude);
      return n;
    }
    if (magnitude <= uint64_t(INT64_MAX) + 1) {
      n.kind = JsonNumber::Kind::kSigned;
      n.i = int64_t(0 - magnitude);  // two's complement: also right for -2^63
      n.value = double(n.i);
      return n;
    }
  }
  // Fractions, exponents and integers beyond 64 bits: the correctly rounded double, as strtod.
  n.kind = JsonNumber::Kind::kFloat;
  const auto [end, error] = std::from_chars(start, p_, n.value);
  if (error == std::errc::result_out_of_range) {
    // from_chars leaves the value unset when it overflows or underflows; strtod gives the
    // infinity or the (signed) zero / subnormal a JSON parser would.
    n.value = std::strtod(std::string(start, p_).c_str(), nullptr);
  } else if (error != std::errc() || end != p_) {
    syntax_error("invalid number");
  }
  return n;
}

size_t JsonReader::list_size_hint() const {
  const void* close = std::memchr(p_, ']', size_t(end_ - p_));
  if (!close) return 0;
  const char* const last = static_cast<const char*>(close);
  size_t commas = 0;
  for (const char* c = p_; c < last; ++c) commas += *c == ',';
  return commas + 1;
}

bool JsonReader::boolean() {
  if (peek() != JsonType::kBool) syntax_error("expected true or false");
  const bool value = *p_ == 't';
  const std::string_view word = value ? "true" : "false";
  if (size_t(end_ - p_) < word.size() || std::string_view(p_, word.size()) != word) {
    syntax_error("invalid literal, expected " + std::string(word));
  }
  p_ += word.size();
  return value;
}

void JsonReader::null() {
  if (peek() != JsonType::kNull || end_ - p_ < 4 || std::string_view(p_, 4) != "null") {
    syntax_error("expected null");
  }
  p_ += 4;
}

void JsonReader::skip() {
  // Iterative, so deeply nested input cannot overflow the stack; `open` holds '{' or '[' per
  // container entered (a short string: no allocation for COCO's nesting).
  std::string open;
  const auto key = [&] {
    skip_space();
    if (p_ == end_ || *p_ != '"') syntax_error("expected a key (a string)");
    ++p_;
    scan_string(nullptr);
    expect(':', "':' after a key");
  };
  for (;;) {
    // A value starts here.
    switch (peek()) {
      case JsonType::kObject:
        ++p_;
        skip_space();
        if (p_ < end_ && *p_ == '}') {
          ++p_;
          break;
        }
        open.push_back('{');
        key();
        continue;
      case JsonType::kArray:
        ++p_;
        skip_space();
        if (p_ < end_ && *p_ == ']') {
          ++p_;
          break;
        }
        open.push_back('[');
        continue;
      case JsonType::kString:
        ++p_;
        scan_string(nullptr);
        break;
      case JsonType::kNumber:
        number();
        break;
      case JsonType::kBool:
        boolean();
        break;
      case JsonType::kNull:
        null();
        break;
    }
    // After a value: close finished containers, then find the next value of the open one.
    for (;;) {
      if (open.empty()) return;
      skip_space();
      const char close = open.back() == '{' ? '}' : ']';
      if (p_ < end_ && *p_ == close) {
        ++p_;
        open.pop_back();
        continue;
      }
      if (p_ == end_ || *p_ != ',') syntax_error(std::string("expected ',' or '") + close + "'");
      ++p_;
      if (open.back() == '{') key();
      break;
    }
  }
}

void JsonReader::finish() {
  skip_space();
  if (p_ != end_) syntax_error("unexpected " + describe_byte(p_, end_) + " after the end of the value");
}

std::vector<Span> split_array(std::string_view text, size_t begin, const std::string& file, size_t& end_offset) {
  std::vector<Span> elements;
  const char* const base = text.data();
  const char* p = base + begin;
  const char* const end = base + text.size();
  // A structure error found by the quick scan. The first error, which may lie earlier in an
  // element the scan does not check, comes from a full pass of the reader.
  const auto fail = [&](const char* at, const char* what) {
    JsonReader full(text, file, begin);
    full.skip();
    throw InputError(file + ": not valid JSON at byte " + std::to_string(at - base) + ": " + what);
  };
  while (p < end && is_space(*p)) ++p;
  if (p == end || *p != '[') fail(p, "expected a list");
  ++p;
  while (p < end && is_space(*p)) ++p;
  if (p < end && *p == ']') {
    end_offset = size_t(p + 1 - base);
    return elements;
  }
  for (;;) {
    while (p < end && is_space(*p)) ++p;
    const char* const start = p;
    size_t depth = 0;  // an int would overflow on 2^31 '[' (a 2 GB file)
    while (p < end) {
      const char c = *p;
      if (c == '"') {
        for (++p;;) {
          p = plain_run(p, end);
          if (p == end) fail(start, "unterminated string");
          if (*p == '"') break;
          // An escape (its next byte cannot end the string), or a byte the reader checks later.
          p += (*p == '\\' && p + 1 < end) ? 2 : 1;
        }
        ++p;
      } else if (c == '[' || c == '{') {
        ++depth;
        ++p;
      } else if (c == ']' || c == '}') {
        if (depth == 0) break;
        --depth;
        ++p;
      } else if (c == ',' && depth == 0) {
        break;
      } else {
        ++p;
      }
    }
    const char* last = p;
    while (last > start && is_space(last[-1])) --last;
    if (last == start) fail(start, "expected a value");
    elements.push_back({size_t(start - base), size_t(last - base)});
    if (p == end) fail(p, "unterminated list, expected ',' or ']'");
    if (*p == ']') break;
    if (*p != ',') fail(p, "expected ',' or ']'");
    ++p;
  }
  end_offset = size_t(p + 1 - base);
  return elements;
}

}  // namespace instseg::coco::detail
