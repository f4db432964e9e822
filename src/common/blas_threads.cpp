#include "instseg/common/blas_threads.h"

#include <dlfcn.h>

namespace instseg {

bool set_openblas_threads(int threads) {
  // Looked up at run time: LibTorch links whichever BLAS the system's alternatives select, and
  // only OpenBLAS has this entry point.
  using SetThreads = void (*)(int);
  void* symbol = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (symbol == nullptr) return false;
  reinterpret_cast<SetThreads>(symbol)(threads);
  return true;
}

}  // namespace instseg
