#pragma once
// A pull parser over JSON text in memory. The caller asks for what it expects next (an object, a
// key, a number, a string) and gets it without any allocation per value: strings without escapes
// are views into the text. COCO files are hundreds of MB of small entries; a DOM of them cost more
// than the evaluation itself. Syntax errors are InputError "<file>: not valid JSON at byte N: ...".
//
//   JsonReader in(text, "gt.json");
//   in.begin_object();
//   for (std::string_view key; in.next_key(key);) {
//     if (key == "id") id = in.number().i; else in.skip();
//   }
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace instseg::coco::detail {

enum class JsonType { kNull, kBool, kNumber, kString, kArray, kObject };
const char* to_string(JsonType type);  // "a number", "an object", ... for messages

// A number as written. Integers keep their exact value when they fit 64 bits (as Python and
// nlohmann::json do); `value` is always the double nearest to the text.
struct JsonNumber {
  enum class Kind { kUnsigned, kSigned, kFloat };  // kSigned: a negative integer
  Kind kind = Kind::kFloat;
  uint64_t u = 0;  // kUnsigned
  int64_t i = 0;   // kSigned, and kUnsigned up to INT64_MAX
  double value = 0;
  bool is_integer() const { return kind != Kind::kFloat; }
};

class JsonReader {
 public:
  // Reads text[begin, end) (end = npos: to the end); offsets in errors count from text's start,
  // so a reader over one entry of a large file still points at the right byte. From begin = 0, a
  // UTF-8 byte-order mark is skipped (elsewhere it is an error that names it).
  JsonReader(std::string_view text, const std::string& file, size_t begin = 0,
             size_t end = std::string_view::npos);

  // Type of the value that starts at the next non-space byte; a syntax error when none does.
  JsonType peek();
  size_t offset() const { return size_t(p_ - text_); }
  // A position to come back to (e.g. to skip a value whose reading stopped half-way).
  struct Mark {
    const char* p;
    bool first;
  };
  Mark mark() const { return {p_, first_}; }
  void reset(Mark mark) {
    p_ = mark.p;
    first_ = mark.first;
  }
  // Continues at `offset` (past a value found by other means, e.g. split_array).
  void seek(size_t offset) { p_ = text_ + offset; }
  // Reads text[begin, end) next, as a new reader would, keeping this one's buffers.
  void restart(size_t begin, size_t end) {
    p_ = text_ + begin;
    end_ = text_ + end;
    first_ = false;
  }

  // Objects: begin_object(); for (std::string_view key; next_key(key);) { read or skip() the value }
  void begin_object();
  bool next_key(std::string_view& key);  // false once the closing '}' is consumed
  // Arrays: begin_array(); while (next_element()) { read or skip() the element }
  void begin_array();
  bool next_element();  // false once the closing ']' is consumed

  JsonNumber number();
  // The decoded contents: a view into the text when it has no escapes, else into `scratch`.
  std::string_view string(std::string& scratch);
  // Same with the reader's own buffer, reused from string to string: the view is valid until the
  // next call (RLE counts strings hold backslashes; no allocation per string).
  std::string_view string() { return string(string_scratch_); }
  // For reserving: the number of elements of the list starting at the next byte when it is a
  // flat list of numbers (counts the ',' before the first ']'; only a guess for other lists).
  size_t list_size_hint() const;
  bool boolean();
  void null();
  // Any value, checked as thoroughly as when read.
  void skip();
  // Only white space may follow (the end of a document or of an entry's span).
  void finish();

  // The source text of [begin, end), shortened for an error message.
  std::string excerpt(size_t begin, size_t end) const;
  [[noreturn]] void syntax_error(const std::string& what) const;

 private:
  void skip_space();
  void expect(char c, const char* what);
  // Consumes a string's closing quote, checking escapes and UTF-8; decodes into `out` if given.
  void scan_string(std::string* out);

  const char* text_;  // offsets count from here
  const char* p_;
  const char* end_;
  const std::string& file_;
  // Whether the innermost container just opened: its first next_key / next_element takes no ','.
  // One flag suffices: a nested value is always read after its parent's first member began.
  bool first_ = false;
  std::string key_scratch_;     // a key with escapes, decoded
  std::string string_scratch_;  // a string value with escapes, decoded
};

// Start and end offsets of a value in the text.
struct Span {
  size_t begin = 0, end = 0;
};

// The element spans of the array that starts at text[begin], by a quick scan that follows strings
// and nesting only (numbers and literals are not checked: each element is read by a JsonReader
// later, on several threads, and checked then). `end` is set past the closing ']'. Structure
// errors name the byte.
std::vector<Span> split_array(std::string_view text, size_t begin, const std::string& file, size_t& end);

// Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), or 0. What the reader accepts in strings, and the writers write.
size_t utf8_length(const char* p, const char* end);

}  // namespace instseg::coco::detail
