#include "instseg/common/blas_threads.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

namespace instseg {
namespace {

TEST(BlasThreads, SetsTheThreadCountOfTheLoadedOpenBlas) {
  // The test program links LibTorch, which loads the system's BLAS: OpenBLAS on the supported setup.
  using GetThreads = int (*)();
  const auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  ASSERT_NE(get, nullptr) << "no OpenBLAS in this process: the setup installs libopenblas0-pthread for LibTorch";
  const int before = get();
  ASSERT_TRUE(set_openblas_threads(1));
  EXPECT_EQ(get(), 1);
  ASSERT_TRUE(set_openblas_threads(3));
  EXPECT_EQ(get(), 3);
  set_openblas_threads(before);
}

}  // namespace
}  // namespace instseg
