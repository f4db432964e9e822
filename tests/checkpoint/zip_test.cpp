// Hostile zip-format .pth files, written byte by byte: LibTorch's reader allocates what a record's
// directory entry declares and inflates compressed records, so each case must end in one
// CheckpointError naming the file, the record and the byte before any record is read, and reading
// may not use much more memory than the file's size.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/reader.h"
#include "checkpoint/test_util.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

using ::testing::HasSubstr;
using namespace std::string_literals;
using testing::checkpoint_error_of;
using testing::checkpoint_ref;

constexpr uint64_t kAsWritten = ~uint64_t(0);

std::string le(uint64_t v, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += char((v >> (8 * i)) & 0xff);
  return out;
}

uint32_t crc32_update(uint32_t crc, const char* data, size_t n) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ uint8_t(data[i])) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// One record as its local header and central directory entry declare it.
struct Entry {
  std::string name;                 // e.g. "archive/data.pkl"
  std::string data;                 // what follows the local header
  uint16_t method = 0;              // 0 stored, 8 deflate
  uint64_t size = kAsWritten;       // declared uncompressed size (default: data.size())
  uint64_t stored = kAsWritten;     // declared compressed size (default: data.size())
  std::optional<uint32_t> crc;      // default: CRC-32 of data
  bool zip64 = false;               // sizes and local header offset in a zip64 extra field
  uint16_t flags = 0;
  uint32_t attributes = 0;          // external attributes (0x10: DOS directory)
  std::optional<size_t> points_to;  // the central entry points to this entry's local header
};

struct Zip {
  std::string bytes;
  std::vector<size_t> central_at;  // each entry's central directory header
  std::vector<size_t> local_at;    // each entry's local header
  size_t directory_at = 0;
  size_t locator_at = 0;
};

// Local headers and data, central directory, zip64 end record, zip64 locator and end record, in the
// order and layout torch.save (miniz) writes them.
Zip zip_of(const std::vector<Entry>& entries) {
  Zip zip;
  std::string& out = zip.bytes;
  for (const auto& e : entries) {
    zip.local_at.push_back(out.size());
    const uint64_t size = e.size == kAsWritten ? e.data.size() : e.size;
    const uint64_t stored = e.stored == kAsWritten ? e.data.size() : e.stored;
    out += le(0x04034b50, 4) + le(e.zip64 ? 45 : 20, 2) + le(e.flags, 2) + le(e.method, 2) + le(0, 4) +
           le(e.crc.value_or(crc32_update(0, e.data.data(), e.data.size())), 4) +
           le(e.zip64 ? 0xffffffff : stored, 4) + le(e.zip64 ? 0xffffffff : size, 4) + le(e.name.size(), 2) +
           le(0, 2) + e.name + e.data;
  }
  zip.directory_at = out.size();
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    zip.central_at.push_back(out.size());
    const uint64_t size = e.size == kAsWritten ? e.data.size() : e.size;
    const uint64_t stored = e.stored == kAsWritten ? e.data.size() : e.stored;
    const uint64_t local = zip.local_at[e.points_to.value_or(i)];
    const std::string extra = e.zip64 ? le(1, 2) + le(24, 2) + le(size, 8) + le(stored, 8) + le(local, 8) : "";
    out += le(0x02014b50, 4) + le(0x031e, 2) + le(e.zip64 ? 45 : 20, 2) + le(e.flags, 2) + le(e.method, 2) +
           le(0, 4) + le(e.crc.value_or(crc32_update(0, e.data.data(), e.data.size())), 4) +
           le(e.zip64 ? 0xffffffff : stored, 4) + le(e.zip64 ? 0xffffffff : size, 4) + le(e.name.size(), 2) +
           le(extra.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(e.attributes, 4) +
           le(e.zip64 ? 0xffffffff : local, 4) + e.name + extra;
  }
  const size_t directory_size = out.size() - zip.directory_at;
  const size_t zip64_at = out.size();
  out += le(0x06064b50, 4) + le(44, 8) + le(0x031e, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(entries.size(), 8) +
         le(entries.size(), 8) + le(directory_size, 8) + le(zip.directory_at, 8);
  zip.locator_at = out.size();
  out += le(0x07064b50, 4) + le(0, 4) + le(zip64_at, 8) + le(1, 4);
  out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(entries.size(), 2) + le(entries.size(), 2) +
         le(directory_size, 4) + le(zip.directory_at, 4) + le(0, 2);
  return zip;
}

std::string str(const std::string& s) { return "X" + le(s.size(), 4) + s; }  // BINUNICODE
// {name: _rebuild_tensor_v2(storage(key, FloatStorage, numel), 0, (numel,), (1,), False, OrderedDict()), ...}
std::string state_dict_pickle(const std::vector<std::array<std::string, 2>>& name_key, int64_t numel) {
  std::string p = "\x80\x02}";
  for (const auto& [name, key] : name_key) {
    p += str(name) + "ctorch._utils\n_rebuild_tensor_v2\n((" + str("storage") + "ctorch\nFloatStorage\n" + str(key) +
         str("cpu") + "\x8a\x08" + le(numel, 8) + "tQK\x00(\x8a\x08"s + le(numel, 8) + "t(K\x01t" +
         "\x89" "ccollections\nOrderedDict\n)RtRs";  // requires_grad False, no backward hooks
  }
  return p + ".";
}

// data.pkl, data/<key> for each storage, version: what torch.save writes.
std::vector<Entry> torch_records(const std::string& pickle, const std::vector<std::array<std::string, 2>>& storages) {
  std::vector<Entry> entries = {{"archive/data.pkl", pickle}};
  for (const auto& [key, bytes] : storages) entries.push_back({"archive/data/" + key, bytes});
  entries.push_back({"archive/version", "3\n"});
  return entries;
}

std::string write(const std::string& name, const std::string& bytes) {
  const std::string path = checkpoint_ref("tmp_zip_" + name + ".pth");
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

// The error of reading the file, which must be the same for the in-memory reader.
std::string read_error(const std::string& path, const std::string& bytes) {
  const std::string from_file = checkpoint_error_of([&] { read_state_dict(path); });
  const std::string in_memory =
      checkpoint_error_of([&] { checkpoint_detail::to_state_dict(checkpoint_detail::unpickle_bytes(bytes, path)); });
  EXPECT_EQ(from_file, in_memory);
  return from_file;
}

int64_t status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

// How much the peak resident memory grew while f ran, in bytes; nullopt where the kernel cannot reset it.
std::optional<int64_t> peak_growth(const std::function<void()>& f) {
  {
    std::ofstream clear("/proc/self/clear_refs");
    if (!(clear << "5" << std::flush)) return std::nullopt;  // "5": peak := current (Linux >= 4.0)
  }
  const int64_t before = status_kb("VmHWM");
  if (before < 0) return std::nullopt;
  f();
  return (status_kb("VmHWM") - before) * 1024;
}

// Deflate (RFC 1951) bits: values least significant bit first, Huffman codes most significant first.
class BitWriter {
 public:
  void bits(uint32_t value, int count) {
    acc_ |= uint64_t(value) << n_;
    for (n_ += count; n_ >= 8; n_ -= 8, acc_ >>= 8) out_ += char(acc_ & 0xff);
  }
  void code(uint32_t code, int length) {
    uint32_t reversed = 0;
    for (int i = 0; i < length; ++i) reversed |= ((code >> i) & 1) << (length - 1 - i);
    bits(reversed, length);
  }
  std::string finish() { return n_ > 0 ? out_ + char(acc_ & 0xff) : out_; }

 private:
  std::string out_;
  uint64_t acc_ = 0;
  int n_ = 0;
};

// One fixed-Huffman block that inflates to `prefix` then zeros, `total` bytes in all: a literal 0,
// then copies of 258 bytes at distance 1 (13 bits each, ~160 times smaller).
std::string deflate_zeros(const std::string& prefix, uint64_t total) {
  BitWriter w;
  w.bits(1, 1);  // last block
  w.bits(1, 2);  // fixed Huffman codes
  auto literal = [&](uint8_t b) { b < 144 ? w.code(0x30 + b, 8) : w.code(0x190 + b - 144, 9); };
  for (char c : prefix) literal(uint8_t(c));
  uint64_t left = total - prefix.size();
  literal(0);
  for (--left; left >= 258; left -= 258) {
    w.code(0xc5, 8);  // length symbol 285: 258 bytes
    w.code(0, 5);     // distance 1
  }
  for (; left > 0; --left) literal(0);
  w.code(0, 7);  // end of block
  return w.finish();
}

uint32_t crc_of_zeros_after(const std::string& prefix, uint64_t total) {
  static const std::string zeros(1 << 16, '\0');
  uint32_t crc = crc32_update(0, prefix.data(), prefix.size());
  for (uint64_t left = total - prefix.size(); left > 0;) {
    const size_t n = size_t(std::min<uint64_t>(left, zeros.size()));
    crc = crc32_update(crc, zeros.data(), n);
    left -= n;
  }
  return crc;
}

const std::string kFourFloats(16, '\1');

TEST(HostileZip, HandBuiltArchivesRead) {
  // The builder's archives are read like torch.save's, with sizes and offsets in the 32-bit fields
  // or in zip64 extra fields (as torch.save writes them for records or offsets past 4 GiB).
  for (bool zip64 : {false, true}) {
    auto entries = torch_records(state_dict_pickle({{"w", "0"}}, 4), {{"0", kFourFloats}});
    for (auto& e : entries) e.zip64 = zip64;
    const Zip zip = zip_of(entries);
    const auto sd = read_state_dict(write(zip64 ? "zip64" : "plain", zip.bytes));
    ASSERT_EQ(sd.size(), 1u);
    EXPECT_EQ(sd[0].first, "w");
    EXPECT_EQ(sd[0].second.numel(), 4);
  }
}

TEST(HostileZip, CompressedRecordIsRefusedBeforeItIsInflated) {
  // data.pkl deflated: 1.7 MB that inflate to 256 MiB ("\x80\x02}." then zeros), which LibTorch
  // allocated and filled before it read the empty dict at its start.
  constexpr uint64_t kInflated = uint64_t(256) << 20;
  const std::string pickle_start = "\x80\x02}.";
  auto entries = torch_records("", {});
  entries[0].data = deflate_zeros(pickle_start, kInflated);
  entries[0].method = 8;
  entries[0].size = kInflated;
  entries[0].crc = crc_of_zeros_after(pickle_start, kInflated);
  const Zip zip = zip_of(entries);
  const auto path = write("deflated", zip.bytes);
  std::string error;
  const auto growth = peak_growth([&] { error = read_error(path, zip.bytes); });
  EXPECT_EQ(error, path + " at byte " + std::to_string(zip.central_at[0]) +
                       ": record 'archive/data.pkl' is compressed (method 8); torch.save stores records uncompressed");
  if (growth) {
    EXPECT_LT(*growth, int64_t(32) << 20) << "bytes of peak memory for a " << zip.bytes.size() << "-byte file";
  }

  // The same declaring 1 TiB in a zip64 extra field, and a storage record compressed.
  entries[0].size = uint64_t(1) << 40;
  entries[0].zip64 = true;
  const Zip huge = zip_of(entries);
  EXPECT_THAT(read_error(write("deflated_tib", huge.bytes), huge.bytes),
              HasSubstr(" at byte " + std::to_string(huge.central_at[0]) +
                        ": record 'archive/data.pkl' is compressed (method 8)"));
  auto storage = torch_records(state_dict_pickle({{"w", "0"}}, 4), {{"0", kFourFloats}});
  storage[1].method = 8;
  const Zip compressed_storage = zip_of(storage);
  EXPECT_THAT(read_error(write("deflated_storage", compressed_storage.bytes), compressed_storage.bytes),
              HasSubstr("record 'archive/data/0' is compressed (method 8)"));
}

TEST(HostileZip, StoredRecordLargerThanTheFileIsRefused) {
  // 8 GiB declared in a zip64 extra field (LibTorch allocated it, then found the data missing) and
  // 1 GiB in the 32-bit fields.
  for (uint64_t declared : {uint64_t(8) << 30, uint64_t(1) << 30}) {
    auto entries = torch_records(state_dict_pickle({{"w", "0"}}, 4), {{"0", kFourFloats}});
    entries[1].size = entries[1].stored = declared;
    entries[1].zip64 = declared > 0xffffffffu;
    const Zip zip = zip_of(entries);
    const auto path = write("oversized", zip.bytes);
    EXPECT_EQ(read_error(path, zip.bytes), path + " at byte " + std::to_string(zip.central_at[1]) +
                                               ": record 'archive/data/0' declares " + std::to_string(declared) +
                                               " bytes, more than the file's " + std::to_string(zip.bytes.size()) +
                                               " bytes");
  }
}

TEST(HostileZip, RecordsSharingBytesCannotMultiplyTheFile) {
  // 64 storage records whose directory entries all point at the one 64 KiB record data/0: LibTorch
  // read it 64 times (64x the file; with more, smaller entries, the file's size squared).
  constexpr int kRecords = 64;
  const std::string data(1 << 16, '\0');
  std::vector<std::array<std::string, 2>> tensors, storages;
  for (int i = 0; i < kRecords; ++i) {
    tensors.push_back({"w" + std::to_string(i), std::to_string(i)});
    storages.push_back({std::to_string(i), i == 0 ? data : ""});
  }
  auto entries = torch_records(state_dict_pickle(tensors, int64_t(data.size() / 4)), storages);
  for (int i = 1; i < kRecords; ++i) {
    entries[size_t(i) + 1].points_to = 1;
    entries[size_t(i) + 1].size = entries[size_t(i) + 1].stored = data.size();
    entries[size_t(i) + 1].crc = crc32_update(0, data.data(), data.size());
  }
  const Zip zip = zip_of(entries);
  const auto path = write("shared_bytes", zip.bytes);
  // data.pkl and data/0 fit; data/1 brings the records to twice the data.
  EXPECT_EQ(read_error(path, zip.bytes),
            path + " at byte " + std::to_string(zip.central_at[2]) +
                ": record 'archive/data/1' brings the records' sizes to " +
                std::to_string(entries[0].data.size() + 2 * data.size()) + " bytes in all, more than the file's " +
                std::to_string(zip.bytes.size()) + " bytes (records overlap)");
}

TEST(HostileZip, StorageKeysDifferingInCaseReadTheRecordOnce) {
  // LibTorch finds records case-insensitively: storages 'a' and 'A' are both data/a, read twice.
  const std::string data(1 << 16, '\0');
  const std::string pickle = state_dict_pickle({{"x", "a"}, {"y", "A"}}, int64_t(data.size() / 4));
  const Zip zip = zip_of(torch_records(pickle, {{"a", data}}));
  const auto path = write("case_alias", zip.bytes);
  const std::string error = read_error(path, zip.bytes);
  EXPECT_THAT(error, HasSubstr(path + " (record data.pkl) at byte "));
  EXPECT_THAT(error, HasSubstr(": storage 'A' brings the bytes read from records to " +
                               std::to_string(pickle.size() + 2 * data.size()) + ", more than the file's " +
                               std::to_string(zip.bytes.size()) +
                               " (storage keys that differ only in case name one record)"));
  // Keys that differ otherwise read as before.
  const Zip two = zip_of(
      torch_records(state_dict_pickle({{"x", "a"}, {"y", "b"}}, 4), {{"a", kFourFloats}, {"b", kFourFloats}}));
  EXPECT_EQ(read_state_dict(write("two_keys", two.bytes)).size(), 2u);
}

TEST(HostileZip, DirectoryEntriesAndMismatchedSizesAreRefused) {
  const auto base = torch_records(state_dict_pickle({{"w", "0"}}, 4), {{"0", kFourFloats}});
  struct Case {
    std::string name;
    std::function<void(std::vector<Entry>&)> change;
    std::string expected;  // after "<path> at byte <central entry of data/0>: record 'archive/data/0' "
  };
  const std::vector<Case> cases = {
      // miniz returns a directory's buffer without filling it: the tensor held whatever malloc gave.
      {"directory", [](auto& e) { e[1].attributes = 0x10; }, "is a directory entry; torch.save writes only files"},
      {"encrypted", [](auto& e) { e[1].flags = 1; }, "is encrypted (flags 0x1); torch.save stores records unencrypted"},
      // Stored in 0 bytes (sizes in a zip64 field, which miniz does not compare): its buffer was returned unfilled.
      {"stored_size", [](auto& e) { e[1].stored = 0; e[1].zip64 = true; },
       "is stored in 0 bytes but declares 16 bytes uncompressed"},
  };
  for (const auto& c : cases) {
    auto entries = base;
    c.change(entries);
    const Zip zip = zip_of(entries);
    const auto path = write(c.name, zip.bytes);
    EXPECT_EQ(read_error(path, zip.bytes),
              path + " at byte " + std::to_string(zip.central_at[1]) + ": record 'archive/data/0' " + c.expected);
  }
}

TEST(HostileZip, LocalHeadersAndEndRecordsOutOfPlaceAreRefused) {
  const auto entries = torch_records(state_dict_pickle({{"w", "0"}}, 4), {{"0", kFourFloats}});
  const Zip zip = zip_of(entries);
  auto patched = [&](size_t at, uint64_t value, int n) {
    std::string bytes = zip.bytes;
    bytes.replace(at, size_t(n), le(value, n));
    return bytes;
  };
  // data/0's local header offset (central header byte 42) past the directory, then at data.pkl's data.
  const size_t offset_field = zip.central_at[1] + 42;
  std::string bytes = patched(offset_field, zip.bytes.size() - 10, 4);
  std::string path = write("local_past", bytes);
  EXPECT_EQ(read_error(path, bytes), path + " at byte " + std::to_string(zip.central_at[1]) +
                                         ": record 'archive/data/0' has its local header at byte " +
                                         std::to_string(zip.bytes.size() - 10) +
                                         ", not before the central directory at byte " +
                                         std::to_string(zip.directory_at));
  bytes = patched(offset_field, zip.local_at[0] + 40, 4);
  path = write("local_inside", bytes);
  EXPECT_EQ(read_error(path, bytes), path + " at byte " + std::to_string(zip.local_at[0] + 40) +
                                         ": no local file header for record 'archive/data/0', whose central "
                                         "directory entry is at byte " + std::to_string(zip.central_at[1]));
  // data.pkl's entry pointing at the version record's local header: its data would run into the directory.
  bytes = patched(zip.central_at[0] + 42, zip.local_at[2], 4);
  path = write("data_past", bytes);
  EXPECT_THAT(read_error(path, bytes), HasSubstr(" at byte " + std::to_string(zip.local_at[2]) +
                                                 ": record 'archive/data.pkl' has its " +
                                                 std::to_string(entries[0].data.size()) + " bytes of data at byte "));
  // The zip64 locator pointing at data.
  bytes = patched(zip.locator_at + 8, 0, 8);
  path = write("zip64_locator", bytes);
  EXPECT_EQ(read_error(path, bytes), path + " at byte 0: no zip64 end of central directory record where the zip64 "
                                            "locator (at byte " + std::to_string(zip.locator_at) + ") points");
  // A directory declaring more entries than it holds.
  bytes = patched(zip.locator_at - 56 + 32, 1000, 8);
  bytes.replace(zip.locator_at - 56 + 24, 8, le(1000, 8));
  path = write("many_entries", bytes);
  EXPECT_THAT(read_error(path, bytes), HasSubstr("cannot hold the 1000 records it declares"));
  // No end record at all (cut) is the error LibTorch's reader gave.
  bytes = zip.bytes.substr(0, zip.bytes.size() - 5);
  path = write("cut", bytes);
  EXPECT_THAT(read_error(path, bytes), HasSubstr(path + ": not a readable zip archive (truncated or corrupt?): "
                                                        "no end of central directory record"));
}

TEST(HostileZip, TorchScriptArchiveIsNamedNotItsCompressedCode) {
  // torch.jit.save deflates its code/ records and writes constants.pkl, which torch.save never does.
  auto entries = torch_records(state_dict_pickle({{"w", "0"}}, 4), {{"0", kFourFloats}});
  entries.insert(entries.begin() + 2, {{"archive/code/__torch__.py", deflate_zeros("", 1000), 8, 1000},
                                       {"archive/constants.pkl", "\x80\x02)."}});
  const Zip zip = zip_of(entries);
  const auto path = write("torchscript", zip.bytes);
  EXPECT_EQ(read_error(path, zip.bytes), path + ": is a TorchScript archive (torch.jit.save), not a torch.save file");
}

TEST(HostileZip, TorchvisionCheckpointsPassTheDirectoryCheck) {
  // Python's torch.save (torchvision's Mask R-CNN, ~180 MB, hundreds of records) reads as before, and
  // the check reads only the directory: the peak memory is the tensors', not twice the file.
  const auto path = checkpoint_ref("maskrcnn_v1.pth");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const int64_t file_size = in.tellg();
  StateDict sd;
  const auto growth = peak_growth([&] { sd = read_state_dict(path); });
  EXPECT_GT(sd.size(), 300u);
  if (growth) EXPECT_LT(*growth, file_size + (int64_t(32) << 20));
}

}  // namespace
}  // namespace instseg
