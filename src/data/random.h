#pragma once
// A small counter-based random source that gives the same numbers on every platform and standard
// library (std::uniform_*_distribution and std::shuffle do not), so data order, augmentation and
// generated images depend only on the seed.
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

namespace instseg::data {

class Rng {
 public:
  // One independent stream per key, e.g. {seed, epoch} or {seed, image index, purpose}.
  explicit Rng(std::initializer_list<uint64_t> key) {
    for (uint64_t k : key) state_ = mix(state_ ^ mix(k + kGamma));
  }

  uint64_t next() { return mix(state_ += kGamma); }  // SplitMix64
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // The draw `ahead` steps from now (0 = what uniform() returns next), without advancing: with
  // skip(), a caller can use a few numbers of a long stream and still leave it where a full walk
  // would (SplitMix64's state moves by a constant per draw).
  double uniform_ahead(uint64_t ahead) const {
    return static_cast<double>(mix(state_ + (ahead + 1) * kGamma) >> 11) * 0x1.0p-53;
  }
  double uniform_ahead(uint64_t ahead, double lo, double hi) const { return lo + (hi - lo) * uniform_ahead(ahead); }
  void skip(uint64_t draws) { state_ += draws * kGamma; }
  int64_t integer(int64_t lo, int64_t hi) {  // [lo, hi]; the modulo bias is negligible here
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }

  template <typename T>
  void shuffle(std::vector<T>& values) {  // Fisher-Yates
    for (int64_t i = static_cast<int64_t>(values.size()) - 1; i > 0; --i) {
      std::swap(values[i], values[integer(0, i)]);
    }
  }

 private:
  static constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;
  static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_ = 0;
};

}  // namespace instseg::data
