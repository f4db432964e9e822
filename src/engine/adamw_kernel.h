#pragma once
// torch.optim.AdamW's element-wise update over raw arrays, in a torch-free file of its own: it is
// built with -fno-math-errno (CMakeLists.txt) so that sqrt, never given a negative number here,
// does not keep the loop from vectorising.
#include <cstdint>

namespace instseg {

template <typename T>
struct AdamWCoefficients {
  T decay, b1, b2, one_minus_b1, one_minus_b2, bc2, eps, step_size;
};

// param, m (exp_avg), v (exp_avg_sq) updated in place from g, n elements; the arrays must not overlap.
void adamw_span(float* param, const float* g, float* m, float* v, int64_t n, const AdamWCoefficients<float>& k);
void adamw_span(double* param, const double* g, double* m, double* v, int64_t n,
                const AdamWCoefficients<double>& k);

}  // namespace instseg
