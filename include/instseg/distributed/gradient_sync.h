#pragma once
// Data-parallel gradient averaging, as DDP does it: parameters are grouped into buckets (in the
// reverse of their registration order, roughly the order the backward pass produces their
// gradients); an autograd hook on each parameter copies its gradient into its bucket, and a full
// bucket's all-reduce starts while the backward pass goes on. Buckets start in one fixed order on
// every rank (a bucket waits for the ones before it), as Gloo matches collectives by order.
//
// Gradient accumulation: backward passes that are not armed only accumulate into .grad locally
// (no communication); the armed one, which ends the window, reduces the accumulated sum.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "instseg/distributed/communicator.h"

namespace instseg::dist {

struct GradientSyncOptions {
  int64_t bucket_bytes = 25 << 20;  // DDP's default bucket cap (bucket_cap_mb = 25)
};

class GradientSync {
 public:
  // `parameters`: those the optimizer updates (requires_grad), in registration order, the same
  // list (shapes, dtypes, order) on every rank.
  GradientSync(Communicator& comm, std::vector<at::Tensor> parameters, GradientSyncOptions options = {});
  ~GradientSync();  // removes the hooks
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // The next backward pass ends an accumulation window: its hooks start the buckets' all-reduces.
  void arm();
  // After the armed backward pass: waits for every bucket (starting, in order, those the pass did
  // not fill) and sets each parameter's .grad to (its accumulated gradient summed over the ranks)
  // / divisor. A parameter no rank computed a gradient for keeps an undefined .grad, as in one
  // process. Disarms.
  void finish(double divisor);

  // Of the last finish(): seconds spent in it waiting for all-reduces still running after the
  // backward pass (what the overlap did not hide).
  double last_wait_seconds() const;
  int64_t bucket_count() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace instseg::dist
