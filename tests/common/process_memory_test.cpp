#include "instseg/common/process_memory.h"

#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/resource.h>

#include <cstdlib>
#include <cstring>

namespace instseg {
namespace {

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// A large block is served from the heap, and after it is freed the next one of that size reuses
// its pages instead of faulting in fresh ones (64 MB = 16384 pages of 4 KB).
TEST(ProcessMemory, LargeBlocksComeFromTheHeapAndReuseFreedPages) {
  ASSERT_TRUE(keep_freed_memory_in_process());
  constexpr size_t kSize = size_t{64} << 20;
  const size_t mmapped_before = mallinfo2().hblkhd;
  void* first = std::malloc(kSize);
  ASSERT_NE(first, nullptr);
  std::memset(first, 1, kSize);
  EXPECT_EQ(mallinfo2().hblkhd, mmapped_before) << "the block was mmap'd";
  std::free(first);

  const long faults_before = minor_faults();
  void* second = std::malloc(kSize);
  ASSERT_NE(second, nullptr);
  std::memset(second, 2, kSize);
  const long faults = minor_faults() - faults_before;
  std::free(second);
  EXPECT_LT(faults, 1000) << "freed pages were returned to the kernel and faulted in again";
}

}  // namespace
}  // namespace instseg
