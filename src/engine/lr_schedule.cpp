#include "instseg/engine/lr_schedule.h"

#include <cmath>

namespace instseg {

double learning_rate(const OptimConfig& optim, int iteration) {
  double decay = 1.0;
  if (optim.schedule == "cosine") {
    const double progress = static_cast<double>(iteration) / optim.iterations;
    decay = 0.5 * (1.0 + std::cos(M_PI * progress));
  } else {
    for (int step : optim.steps) {
      if (iteration >= step) decay *= optim.gamma;
    }
  }
  double warmup = 1.0;
  if (iteration < optim.warmup_iterations) {
    const double alpha = static_cast<double>(iteration) / optim.warmup_iterations;
    warmup = optim.warmup_factor * (1.0 - alpha) + alpha;
  }
  return optim.lr * decay * warmup;
}

}  // namespace instseg
