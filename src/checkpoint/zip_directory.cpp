#include "checkpoint/zip_directory.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "instseg/errors.h"

namespace instseg::checkpoint_detail {
namespace {

// Signatures and sizes from PKWARE's APPNOTE.TXT: local file header (4.3.7), central directory
// header (4.3.12), zip64 end of central directory record (4.3.14) and locator (4.3.15), end of
// central directory record (4.3.16), zip64 extended information extra field (4.5.3).
constexpr uint64_t kLocalHeaderSig = 0x04034b50;
constexpr uint64_t kCentralHeaderSig = 0x02014b50;
constexpr uint64_t kZip64EndSig = 0x06064b50;
constexpr uint64_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kEndSig = 0x06054b50;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kZip64EndSize = 56;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint64_t kEndSize = 22;
constexpr uint64_t kMaxCommentSize = 0xffff;
constexpr uint64_t kInZip64Extra = 0xffffffff;  // a 32-bit size or offset whose value is in the extra field
constexpr uint64_t kZip64ExtraId = 0x0001;
// General purpose flags: encrypted, compressed patch data, strong encryption.
constexpr uint64_t kUnsupportedFlags = 0x0001 | 0x0020 | 0x0040;
constexpr uint64_t kDosDirectoryAttribute = 0x10;

// Little-endian unsigned integer of n bytes at `at` (the caller checked that they are there).
uint64_t le(const std::string& bytes, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = v << 8 | uint8_t(bytes[at + i]);
  return v;
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// A record's name as messages show it: bytes outside printable ASCII escaped, long names cut.
std::string printable(const std::string& name) {
  constexpr size_t kShown = 200;
  std::string out;
  for (size_t i = 0; i < std::min(name.size(), kShown); ++i) {
    const auto c = uint8_t(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return name.size() > kShown ? out + "..." : out;
}

class Archive {
 public:
  Archive(const caffe2::serialize::ReadAdapterInterface& in, const std::string& path)
      : in_(in), path_(path), size_(in.size()) {}
  uint64_t size() const { return size_; }

  // The n bytes at `pos`, which the caller checked lie inside the file (n is at most its size).
  std::string read(uint64_t pos, uint64_t n) const {
    std::string bytes(static_cast<size_t>(n), '\0');
    size_t got = 0;
    try {
      got = in_.read(pos, bytes.data(), bytes.size(), "reading the zip directory");
    } catch (const c10::Error& e) {
      const std::string why = e.what_without_backtrace();
      unreadable("reading bytes " + std::to_string(pos) + " to " + std::to_string(pos + n) + " failed: " +
                 why.substr(0, why.find('\n')));
    }
    if (got != bytes.size()) {
      unreadable("reading bytes " + std::to_string(pos) + " to " + std::to_string(pos + n) + " gave " +
                 std::to_string(got) + " bytes (file changed while read?)");
    }
    return bytes;
  }

  [[noreturn]] void fail(uint64_t at, const std::string& what) const {
    throw CheckpointError(path_ + " at byte " + std::to_string(at) + ": " + what);
  }
  [[noreturn]] void unreadable(const std::string& why) const {
    throw CheckpointError(path_ + ": not a readable zip archive (truncated or corrupt?): " + why);
  }

 private:
  const caffe2::serialize::ReadAdapterInterface& in_;
  const std::string& path_;
  uint64_t size_;
};

struct Directory {
  uint64_t at = 0;       // the central directory's first byte
  uint64_t size = 0;     // its bytes
  uint64_t entries = 0;  // records
};

// From the end of central directory record, and the zip64 one it points to when there is a locator
// right before it: as LibTorch's reader (miniz) does, the zip64 values then count. torch.save (miniz
// with MZ_ZIP_FLAG_WRITE_ZIP64) writes both, whatever the file's size, and no archive comment.
Directory find_directory(const Archive& zip) {
  const uint64_t size = zip.size();
  if (size < kEndSize) {
    zip.unreadable(std::to_string(size) + " bytes, shorter than an end of central directory record");
  }
  // miniz takes the last signature that has a whole record after it; a comment may follow it.
  const uint64_t tail_at = size - std::min(size, kEndSize + kMaxCommentSize);
  const std::string tail = zip.read(tail_at, size - tail_at);
  size_t found = tail.size() - kEndSize + 1;
  for (size_t i = found; i-- > 0;) {
    if (le(tail, i, 4) == kEndSig) {
      found = i;
      break;
    }
  }
  if (found > tail.size() - kEndSize) {
    zip.unreadable("no end of central directory record in its last " + std::to_string(tail.size()) + " bytes");
  }
  const uint64_t end_at = tail_at + found;
  Directory dir{le(tail, found + 16, 4), le(tail, found + 12, 4), le(tail, found + 10, 2)};
  // This disk, the directory's disk, and the records on this disk.
  bool split = le(tail, found + 4, 2) != 0 || le(tail, found + 6, 2) != 0 || le(tail, found + 8, 2) != dir.entries;
  uint64_t limit = end_at;  // the directory ends before the (zip64) end record

  if (end_at >= kZip64LocatorSize + kZip64EndSize) {
    const uint64_t locator_at = end_at - kZip64LocatorSize;
    const std::string locator = zip.read(locator_at, kZip64LocatorSize);
    if (le(locator, 0, 4) == kZip64LocatorSig) {
      const uint64_t zip64_at = le(locator, 8, 8);
      if (zip64_at > locator_at - kZip64EndSize) {
        zip.fail(locator_at, "the zip64 locator points to byte " + std::to_string(zip64_at) +
                                 ", where no zip64 end of central directory record fits before it");
      }
      const std::string end64 = zip.read(zip64_at, kZip64EndSize);
      if (le(end64, 0, 4) != kZip64EndSig) {
        zip.fail(zip64_at, "no zip64 end of central directory record where the zip64 locator (at byte " +
                               std::to_string(locator_at) + ") points");
      }
      dir = {le(end64, 48, 8), le(end64, 40, 8), le(end64, 32, 8)};
      split = le(locator, 16, 4) != 1 || le(end64, 16, 4) != 0 || le(end64, 20, 4) != 0 ||
              le(end64, 24, 8) != dir.entries;
      limit = zip64_at;
    }
  }
  if (split) {
    zip.fail(end_at, "a split (multi-disk) zip archive, which torch.save does not write");
  }
  if (dir.at > limit || dir.size > limit - dir.at) {
    zip.fail(end_at, "the central directory (" + std::to_string(dir.size) + " bytes at byte " + std::to_string(dir.at) +
                         ") does not end before the end of central directory record at byte " + std::to_string(limit));
  }
  if (dir.entries > dir.size / kCentralHeaderSize) {
    zip.fail(end_at, "a central directory of " + std::to_string(dir.size) + " bytes cannot hold the " +
                         std::to_string(dir.entries) + " records it declares");
  }
  return dir;
}

// One central directory entry, with the values of its zip64 extra field applied.
struct Entry {
  uint64_t at = 0;  // its central directory header
  std::string name;
  uint64_t flags = 0, method = 0, attributes = 0;
  uint64_t stored = 0;     // compressed size
  uint64_t data_size = 0;  // uncompressed size: what LibTorch allocates
  uint64_t local_at = 0;   // its local header
  std::string record() const { return "record '" + printable(name) + "'"; }
};

std::vector<Entry> read_entries(const Archive& zip, const Directory& dir) {
  const std::string bytes = zip.read(dir.at, dir.size);  // at most the file's size
  std::vector<Entry> entries;
  size_t p = 0;
  for (uint64_t i = 0; i < dir.entries; ++i) {
    Entry e;
    e.at = dir.at + p;
    if (bytes.size() - p < kCentralHeaderSize || le(bytes, p, 4) != kCentralHeaderSig) {
      zip.fail(e.at, "central directory entry " + std::to_string(i) + " of " + std::to_string(dir.entries) +
                         " is not a central directory header");
    }
    e.flags = le(bytes, p + 8, 2);
    e.method = le(bytes, p + 10, 2);
    e.stored = le(bytes, p + 20, 4);
    e.data_size = le(bytes, p + 24, 4);
    const size_t name_size = le(bytes, p + 28, 2), extra_size = le(bytes, p + 30, 2);
    const size_t comment_size = le(bytes, p + 32, 2);
    e.attributes = le(bytes, p + 38, 4);
    e.local_at = le(bytes, p + 42, 4);
    if (bytes.size() - p - kCentralHeaderSize < name_size + extra_size + comment_size) {
      zip.fail(e.at, "central directory entry " + std::to_string(i) + " runs past the end of the central directory");
    }
    e.name = bytes.substr(p + kCentralHeaderSize, name_size);

    // 32-bit fields set to 0xffffffff are in the first zip64 extra field, in this order (as miniz reads them).
    if (e.stored == kInZip64Extra || e.data_size == kInZip64Extra || e.local_at == kInZip64Extra) {
      size_t f = p + kCentralHeaderSize + name_size;
      size_t left = extra_size;
      while (left > 0) {
        if (left < 4 || left - 4 < le(bytes, f + 2, 2)) zip.fail(e.at, e.record() + " has a malformed extra field");
        const size_t field_size = le(bytes, f + 2, 2);
        if (le(bytes, f, 2) == kZip64ExtraId) {
          size_t v = f + 4, v_left = field_size;
          for (uint64_t* value : {&e.data_size, &e.stored, &e.local_at}) {
            if (*value != kInZip64Extra) continue;
            if (v_left < 8) zip.fail(e.at, e.record() + " has a zip64 extra field too short for its sizes and offset");
            *value = le(bytes, v, 8);
            v += 8;
            v_left -= 8;
          }
          break;
        }
        f += 4 + field_size;
        left -= 4 + field_size;
      }
    }
    entries.push_back(std::move(e));
    p += kCentralHeaderSize + name_size + extra_size + comment_size;
  }
  return entries;
}

}  // namespace

uint64_t check_zip_records(const caffe2::serialize::ReadAdapterInterface& in, const std::string& path) {
  const Archive zip(in, path);
  const uint64_t size = zip.size();
  const Directory dir = find_directory(zip);
  const std::vector<Entry> entries = read_entries(zip, dir);
  // torch.jit.save compresses its code records; say what the file is rather than what it does.
  for (const auto& e : entries) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash + 1, std::string::npos, "constants.pkl") == 0) {
      throw CheckpointError(path + ": is a TorchScript archive (torch.jit.save), not a torch.save file");
    }
  }
  uint64_t declared = 0;
  for (const auto& e : entries) {
    // LibTorch allocates data_size bytes for the record, inflating compressed data into them.
    if (e.flags & kUnsupportedFlags) {
      zip.fail(e.at, e.record() + " is encrypted (flags " + hex(e.flags) + "); torch.save stores records unencrypted");
    }
    if (e.method != 0) {
      zip.fail(e.at, e.record() + " is compressed (method " + std::to_string(e.method) +
                         "); torch.save stores records uncompressed");
    }
    // miniz returns a directory's buffer unfilled.
    if ((!e.name.empty() && e.name.back() == '/') || (e.attributes & kDosDirectoryAttribute)) {
      zip.fail(e.at, e.record() + " is a directory entry; torch.save writes only files");
    }
    if (e.data_size > size) {
      zip.fail(e.at, e.record() + " declares " + std::to_string(e.data_size) + " bytes, more than the file's " +
                         std::to_string(size) + " bytes");
    }
    if (e.stored != e.data_size) {
      zip.fail(e.at, e.record() + " is stored in " + std::to_string(e.stored) + " bytes but declares " +
                         std::to_string(e.data_size) + " bytes uncompressed");
    }
    if (e.local_at > dir.at || dir.at - e.local_at < kLocalHeaderSize) {
      zip.fail(e.at, e.record() + " has its local header at byte " + std::to_string(e.local_at) +
                         ", not before the central directory at byte " + std::to_string(dir.at));
    }
    const std::string local = zip.read(e.local_at, kLocalHeaderSize);
    if (le(local, 0, 4) != kLocalHeaderSig) {
      zip.fail(e.local_at, "no local file header for " + e.record() + ", whose central directory entry is at byte " +
                               std::to_string(e.at));
    }
    const uint64_t data_at = e.local_at + kLocalHeaderSize + le(local, 26, 2) + le(local, 28, 2);
    if (data_at > dir.at || e.data_size > dir.at - data_at) {
      zip.fail(e.local_at, e.record() + " has its " + std::to_string(e.data_size) + " bytes of data at byte " +
                               std::to_string(data_at) + ", past the central directory at byte " +
                               std::to_string(dir.at));
    }
    // Each record fits in the file; records that share bytes could still declare many times its size.
    if (e.data_size > size - declared) {
      zip.fail(e.at, e.record() + " brings the records' sizes to " + std::to_string(declared + e.data_size) +
                         " bytes in all, more than the file's " + std::to_string(size) + " bytes (records overlap)");
    }
    declared += e.data_size;
  }
  return size;
}

}  // namespace instseg::checkpoint_detail
