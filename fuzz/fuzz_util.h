#pragma once
// Shared by the libFuzzer harnesses. A harness returns normally when the library accepts an input
// or refuses it with one of its documented exceptions; anything else escapes and libFuzzer reports
// it as a finding (a sanitizer report, a crash, an uncaught exception such as std::bad_alloc).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "instseg/errors.h"

namespace instseg::fuzz {

// A file per process for the readers that only take a path. /dev/shm (tmpfs) when there is one,
// so an input costs no disk write; the name carries the pid so parallel fuzzers do not collide.
inline std::string scratch_path(const char* suffix) {
  const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(dir) + "/instseg-fuzz-" + std::to_string(getpid()) + suffix;
}

// Writes `data` to `path`; a failure here is the harness's, not the library's: abort loudly.
inline void write_scratch(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

// Runs f: true when it returns, false when the library refuses the input with an InputError (the
// documented refusal of the COCO and JSON readers); anything else escapes as a finding.
template <typename F>
bool accepted(F&& f) {
  try {
    f();
    return true;
  } catch (const InputError&) {
    return false;
  }
}

// Aborts with a message: a broken invariant (e.g. a round trip that changed a mask) is a finding.
[[noreturn]] inline void invariant_failed(const char* what) {
  std::fprintf(stderr, "invariant failed: %s\n", what);
  std::abort();
}

}  // namespace instseg::fuzz

#define FUZZ_CHECK(cond)                                   \
  do {                                                     \
    if (!(cond)) ::instseg::fuzz::invariant_failed(#cond); \
  } while (0)
