// The communicator of a job of one process: every collective is the identity.
#include <torch/torch.h>

#include <cstring>

#include "instseg/distributed/communicator.h"

namespace instseg::dist {

namespace {

class Done : public PendingReduce {
 public:
  void wait() override {}
};

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(std::vector<at::Tensor>&) override {}
  std::unique_ptr<PendingReduce> all_reduce_sum_async(at::Tensor) override { return std::make_unique<Done>(); }
  void broadcast(std::vector<at::Tensor>&, int) override {}
  std::vector<std::string> all_gather_bytes(const std::string& bytes) override { return {bytes}; }
  void barrier() override {}
  void mark_progress(int64_t) override {}
};

}  // namespace

std::unique_ptr<Communicator> single_process() { return std::make_unique<SingleProcess>(); }

double all_reduce_sum(Communicator& comm, double value) {
  std::vector<at::Tensor> tensors = {torch::full({1}, value, torch::kFloat64)};
  comm.all_reduce_sum(tensors);
  return tensors[0].item<double>();
}

std::string broadcast_bytes(Communicator& comm, const std::string& bytes, int root) {
  if (comm.world_size() == 1) return bytes;
  std::vector<at::Tensor> size = {torch::full({1}, static_cast<int64_t>(bytes.size()), torch::kInt64)};
  comm.broadcast(size, root);
  std::vector<at::Tensor> data = {torch::zeros({size[0].item<int64_t>()}, torch::kUInt8)};
  if (comm.rank() == root) std::memcpy(data[0].data_ptr(), bytes.data(), bytes.size());
  comm.broadcast(data, root);
  return std::string(static_cast<const char*>(data[0].data_ptr()), static_cast<size_t>(data[0].numel()));
}

}  // namespace instseg::dist
