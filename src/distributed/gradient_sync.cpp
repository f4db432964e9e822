// Gradient buckets all-reduced while the backward pass goes on (DDP's scheme, written for our
// Communicator). A bucket is one flat buffer: the gradients of its parameters, then one "has grad"
// flag per parameter, so that a single all-reduce sums both and every rank learns which parameters
// some rank produced a gradient for.
#include "instseg/distributed/gradient_sync.h"

#include <torch/torch.h>

#include <chrono>
#include <mutex>
#include <sstream>
#include <string>

#include "instseg/errors.h"

namespace instseg::dist {

namespace {

// Float32 for float32 and the half types (the collectives take float, double, int64; summing
// bf16 in bf16 would also lose precision), float64 for float64.
at::ScalarType reduce_dtype(const at::Tensor& parameter, size_t index) {
  switch (parameter.scalar_type()) {
    case at::kDouble:
      return at::kDouble;
    case at::kFloat:
    case at::kHalf:
    case at::kBFloat16:
      return at::kFloat;
    default: {
      std::ostringstream message;
      message << "GradientSync: parameter #" << index << " has dtype " << parameter.scalar_type()
              << "; only float32, float64, float16 and bfloat16 gradients can be averaged";
      throw ConfigError(message.str());
    }
  }
}

std::string describe(size_t index, const at::Tensor& parameter) {
  std::ostringstream out;
  out << "parameter #" << index << " (shape " << parameter.sizes() << ")";
  return out.str();
}

}  // namespace

struct GradientSync::State {
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters, in bucket order
    int64_t grad_numel = 0;       // the flags start here
    at::Tensor buffer;            // [grad_numel + members.size()], the reduce dtype
    size_t filled = 0;            // members whose slot holds this pass's gradient
    std::unique_ptr<PendingReduce> pending;
    bool launched = false;
  };
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0;  // of the gradient in the bucket's buffer
    size_t member = 0;   // position in the bucket: its flag sits at grad_numel + member
    bool filled = false;
    unsigned hook = 0;
  };

  Communicator& comm;
  std::vector<at::Tensor> parameters;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  // Autograd may run the hooks on its own worker threads; one lock keeps slots, counters and the
  // launch order consistent.
  std::mutex mutex;
  bool armed = false;
  size_t next_launch = 0;  // buckets before this one have started their all-reduce
  double last_wait_seconds = 0;

  State(Communicator& c) : comm(c) {}

  at::Tensor grad_view(size_t index) {
    const Slot& slot = slots[index];
    const at::Tensor& parameter = parameters[index];
    return buckets[slot.bucket].buffer.narrow(0, slot.offset, parameter.numel()).view(parameter.sizes());
  }
  at::Tensor flag(size_t index) {
    const Slot& slot = slots[index];
    Bucket& bucket = buckets[slot.bucket];
    return bucket.buffer.narrow(0, bucket.grad_numel + static_cast<int64_t>(slot.member), 1);
  }

  // Starts, in bucket order, every complete bucket from the first one not yet started; stops at the
  // first incomplete one, so that every rank issues the same collectives in the same order.
  void launch_ready() {
    while (next_launch < buckets.size() && buckets[next_launch].filled == buckets[next_launch].members.size()) {
      Bucket& bucket = buckets[next_launch];
      bucket.pending = comm.all_reduce_sum_async(bucket.buffer);
      bucket.launched = true;
      ++next_launch;
    }
  }

  // Forgets a pass (finished, or abandoned by a backward pass that threw). A bucket whose
  // all-reduce was started and never waited for gets a fresh buffer: the collective may still be
  // writing into the old one, which it keeps alive.
  void reset() {
    for (Bucket& bucket : buckets) {
      if (bucket.launched && bucket.pending) bucket.buffer = at::empty_like(bucket.buffer);
      bucket.pending.reset();
      bucket.launched = false;
      bucket.filled = 0;
    }
    for (Slot& slot : slots) slot.filled = false;
    next_launch = 0;
  }

  void on_gradient(size_t index, const at::Tensor& incoming) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed) return;  // inside an accumulation window: AccumulateGrad sums locally
    Slot& slot = slots[index];
    Bucket& bucket = buckets[slot.bucket];
    if (bucket.launched) {
      throw DistributedError("GradientSync: " + describe(index, parameters[index]) +
                             " received a second gradient after its bucket's all-reduce started; "
                             "an armed pass must run backward once");
    }
    if (incoming.is_sparse()) {
      throw DistributedError("GradientSync: " + describe(index, parameters[index]) + " has a sparse gradient");
    }
    // What AccumulateGrad is about to store: the window's earlier micro-batches plus this one. A
    // second gradient in the same pass overwrites the slot with the grown sum, which is right too.
    at::Tensor view = grad_view(index);
    const at::Tensor& accumulated = parameters[index].grad();
    if (accumulated.defined()) {
      at::add_out(view, accumulated, incoming);
    } else {
      view.copy_(incoming);
    }
    flag(index).fill_(1);
    if (!slot.filled) {
      slot.filled = true;
      ++bucket.filled;
      if (bucket.filled == bucket.members.size()) launch_ready();
    }
  }
};

GradientSync::GradientSync(Communicator& comm, std::vector<at::Tensor> parameters, GradientSyncOptions options)
    : state_(std::make_unique<State>(comm)) {
  if (options.bucket_bytes <= 0) {
    throw ConfigError("GradientSync: bucket_bytes must be positive, got " + std::to_string(options.bucket_bytes));
  }
  State& s = *state_;
  // Frozen parameters take no part (no gradient, no slot), as in DDP.
  for (auto& parameter : parameters) {
    if (parameter.requires_grad()) s.parameters.push_back(std::move(parameter));
  }
  s.slots.resize(s.parameters.size());

  // Reverse registration order approximates the order the backward pass produces gradients, so the
  // first buckets fill (and start) early. A bucket holds one reduce dtype and at most bucket_bytes,
  // unless a single parameter is larger: it then is a bucket alone.
  std::vector<at::ScalarType> dtypes;
  int64_t bytes = 0;
  for (size_t k = s.parameters.size(); k-- > 0;) {
    const at::Tensor& parameter = s.parameters[k];
    const at::ScalarType dtype = reduce_dtype(parameter, k);
    const int64_t size = parameter.numel() * static_cast<int64_t>(c10::elementSize(dtype));
    if (s.buckets.empty() || dtype != dtypes.back() || bytes + size > options.bucket_bytes) {
      s.buckets.emplace_back();
      dtypes.push_back(dtype);
      bytes = 0;
    }
    State::Bucket& bucket = s.buckets.back();
    s.slots[k].bucket = s.buckets.size() - 1;
    s.slots[k].offset = bucket.grad_numel;
    s.slots[k].member = bucket.members.size();
    bucket.members.push_back(k);
    bucket.grad_numel += parameter.numel();
    bytes += size;
  }
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    State::Bucket& bucket = s.buckets[b];
    bucket.buffer = torch::zeros({bucket.grad_numel + static_cast<int64_t>(bucket.members.size())},
                                 torch::TensorOptions().dtype(dtypes[b]));
  }

  // A leaf's hook runs as AccumulateGrad's pre-hook: once per backward pass, with the gradient
  // summed over every use of the parameter, before it is added into .grad. The hooks capture the
  // state, never the parameter (which owns them): no reference cycle.
  State* raw = &s;
  for (size_t k = 0; k < s.parameters.size(); ++k) {
    s.slots[k].hook = s.parameters[k].register_hook([raw, k](const at::Tensor& grad) { raw->on_gradient(k, grad); });
  }
}

GradientSync::~GradientSync() {
  for (size_t k = 0; k < state_->parameters.size(); ++k) state_->parameters[k].remove_hook(state_->slots[k].hook);
}

void GradientSync::arm() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->reset();
  state_->armed = true;
}

void GradientSync::finish(double divisor) {
  if (!(divisor > 0)) throw ConfigError("GradientSync::finish: divisor must be positive, got " + std::to_string(divisor));
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.armed) s.reset();  // no armed pass: reduce the .grad there is
  s.armed = false;          // from here on, hooks (of a later pass) must not touch the buffers

  // Parameters the pass did not reach: what they hold (an earlier micro-batch's gradient), else
  // zeros flagged "no gradient here".
  for (size_t b = s.next_launch; b < s.buckets.size(); ++b) {
    State::Bucket& bucket = s.buckets[b];
    for (size_t k : bucket.members) {
      State::Slot& slot = s.slots[k];
      if (slot.filled) continue;
      const at::Tensor& accumulated = s.parameters[k].grad();
      if (accumulated.defined()) {
        s.grad_view(k).copy_(accumulated);
        s.flag(k).fill_(1);
      } else {
        s.grad_view(k).zero_();
        s.flag(k).fill_(0);
      }
      slot.filled = true;
      ++bucket.filled;
    }
  }
  s.launch_ready();

  const auto start = std::chrono::steady_clock::now();
  for (State::Bucket& bucket : s.buckets) {
    bucket.pending->wait();
    bucket.pending.reset();
    bucket.launched = false;
  }
  s.last_wait_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  for (State::Bucket& bucket : s.buckets) {
    bucket.buffer.narrow(0, 0, bucket.grad_numel).div_(divisor);
    const at::Tensor flags = bucket.buffer.narrow(0, bucket.grad_numel, static_cast<int64_t>(bucket.members.size()));
    const auto counts = flags.to(at::kDouble).contiguous();
    const double* count = counts.data_ptr<double>();
    for (size_t m = 0; m < bucket.members.size(); ++m) {
      const size_t k = bucket.members[m];
      if (count[m] < 0.5) continue;  // no rank has a gradient: stays undefined, as in one process
      at::Tensor& grad = s.parameters[k].mutable_grad();
      const at::Tensor averaged = s.grad_view(k);
      if (grad.defined()) {
        grad.copy_(averaged);
      } else {
        // Its own memory: the bucket's buffer is rewritten by the next pass.
        grad = averaged.to(s.parameters[k].scalar_type(), /*non_blocking=*/false, /*copy=*/true);
      }
    }
  }
  s.reset();
}

double GradientSync::last_wait_seconds() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->last_wait_seconds;
}

int64_t GradientSync::bucket_count() const { return static_cast<int64_t>(state_->buckets.size()); }

}  // namespace instseg::dist
