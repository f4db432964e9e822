#include "instseg/common/process_memory.h"

#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace instseg {

bool keep_freed_memory_in_process() {
#if defined(__GLIBC__)
  // Every block from the heap (no mmap'd blocks, which go back to the kernel when freed), and
  // the heap's free top kept up to 2 GB instead of trimmed.
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
  return false;
#endif
}

}  // namespace instseg
