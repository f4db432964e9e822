#include "engine/adamw_kernel.h"

#include <cmath>

namespace instseg {
namespace {

// In torch's order of operations, and without FMA contraction (CMakeLists.txt): a*b+c rounds as
// torch's does.
template <typename T>
[[gnu::always_inline]] inline void adamw_elements(T* __restrict param, const T* __restrict g, T* __restrict m,
                                                  T* __restrict v, int64_t n, const AdamWCoefficients<T>& k) {
  for (int64_t i = 0; i < n; ++i) {
    param[i] *= k.decay;
    m[i] = m[i] * k.b1 + k.one_minus_b1 * g[i];
    v[i] = v[i] * k.b2 + k.one_minus_b2 * (g[i] * g[i]);
    param[i] -= k.step_size * (m[i] / (std::sqrt(v[i]) / k.bc2 + k.eps));
  }
}

}  // namespace

// One copy per instruction set, chosen at load time: vectorised, the update takes ~5x less time
// than as scalar code, which was ~10% of the demo's training step (docs/benchmarks.md).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define INSTSEG_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define INSTSEG_VECTOR_CLONES
#endif

INSTSEG_VECTOR_CLONES void adamw_span(float* param, const float* g, float* m, float* v, int64_t n,
                                      const AdamWCoefficients<float>& k) {
  adamw_elements(param, g, m, v, n, k);
}

INSTSEG_VECTOR_CLONES void adamw_span(double* param, const double* g, double* m, double* v, int64_t n,
                                      const AdamWCoefficients<double>& k) {
  adamw_elements(param, g, m, v, n, k);
}

}  // namespace instseg
