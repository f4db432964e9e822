#pragma once
// BLAS threading for the programs (instseg, the benchmarks); the library itself never changes it.

namespace instseg {

// Sets the thread count of the OpenBLAS loaded into this process, if any. Debian's
// libopenblas0-pthread keeps its own worker threads beside LibTorch's OpenMP ones, and an idle
// worker spins for 2^28 cycles (~0.1 s) after each matrix product before it sleeps: on a 2-core
// machine that takes a core from the convolutions that follow (docs/benchmarks.md). Returns false
// where no OpenBLAS is loaded (another BLAS implementation), and then changes nothing.
bool set_openblas_threads(int threads);

}  // namespace instseg
