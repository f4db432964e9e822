#pragma once
// The bytes ranks of a job exchange (Communicator::all_gather_bytes): values in this machine's
// representation, as the ranks of a job run one build on one kind of machine, so doubles travel
// bit for bit; strings length-prefixed.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace instseg::detail {

class ByteWriter {
 public:
  template <typename T>
  void put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    bytes_.append(s.data(), s.size());
  }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, take(sizeof(T)).data(), sizeof(T));
    return value;
  }
  std::string get_string() { return std::string(take(get<uint64_t>())); }
  bool done() const { return bytes_.empty(); }

 private:
  std::string_view take(uint64_t n) {
    // Only a bug gets here (the bytes come from another rank of this program): say so.
    if (n > bytes_.size()) throw std::logic_error("a record from another rank is truncated");
    const std::string_view out = bytes_.substr(0, n);
    bytes_.remove_prefix(n);
    return out;
  }
  std::string_view bytes_;
};

}  // namespace instseg::detail
