#include "instseg/ops/mixed_precision.h"

#include <ATen/autocast_mode.h>

namespace instseg::ops {

bool cpu_has_native_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

Bf16AutocastScope::Bf16AutocastScope(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  was_enabled_ = at::autocast::is_cpu_enabled();
  previous_dtype_ = static_cast<int>(at::autocast::get_autocast_cpu_dtype());
  at::autocast::set_cpu_enabled(true);
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::increment_nesting();
}

Bf16AutocastScope::~Bf16AutocastScope() {
  if (!enabled_) return;
  // The cache holds each weight's bfloat16 copy for one forward pass; the next pass has new weights.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_cpu_dtype(static_cast<at::ScalarType>(previous_dtype_));
  at::autocast::set_cpu_enabled(was_enabled_);
}

}  // namespace instseg::ops
