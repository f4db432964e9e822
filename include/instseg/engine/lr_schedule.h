#pragma once
#include "instseg/engine/train_config.h"

namespace instseg {

// Learning rate at `iteration` (0-based): linear warm-up from lr * warmup_factor to lr over
// warmup_iterations (torchvision's references), times the step or cosine decay.
double learning_rate(const OptimConfig& optim, int iteration);

}  // namespace instseg
