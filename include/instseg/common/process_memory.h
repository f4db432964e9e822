#pragma once
// Process-wide memory policy for the programs (instseg, the benchmarks); the library itself
// never changes it.

namespace instseg {

// Makes glibc's malloc keep freed memory in the process for reuse instead of returning it to the
// kernel. Tensors above glibc's mmap threshold (at most 32 MB: an 800 px image's stride-4
// activations are ~60 MB) otherwise get fresh pages on every allocation, and each page faults on
// first touch (~15 us on the VMs measured here, 75-80% of an 800 px prediction's time:
// docs/benchmarks.md). Costs: the peak stays resident until the process ends. Returns false
// where it does not apply (not glibc).
bool keep_freed_memory_in_process();

}  // namespace instseg
