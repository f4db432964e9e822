#pragma once
// A whole file as read-only text, mapped into memory rather than copied: COCO results files reach
// hundreds of MB and are read once. Falls back to reading when the file cannot be mapped (a pipe).
#include <string>
#include <string_view>

namespace instseg::coco::detail {

class MappedFile {
 public:
  // Throws InputError "<path>: cannot open for reading" (or "read failed", "is a folder, not a
  // file", "not a regular file (a character device)": only regular files and pipes are read).
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::string_view text() const { return {data_, size_}; }

 private:
  const char* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::string copy_;  // the contents when not mapped
};

}  // namespace instseg::coco::detail
