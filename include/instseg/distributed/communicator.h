#pragma once
// The collectives a data-parallel job needs, on LibTorch's c10d (ProcessGroupGloo over a TCPStore
// rendezvous), behind one small interface so that one process is the same code path with
// collectives that return at once. Every rank calls the same collectives in the same order.
#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "instseg/distributed/launch_environment.h"

namespace instseg::dist {

struct CommunicatorOptions {
  // How long joining the job and each collective wait for the other ranks before failing with a
  // DistributedError (a rank that died is usually noticed at once; one that hangs, after this).
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

// An all-reduce started by all_reduce_sum_async.
class PendingReduce {
 public:
  virtual ~PendingReduce() = default;
  virtual void wait() = 0;  // DistributedError as the blocking collectives
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  bool is_main() const { return rank() == 0; }

  // In place: each tensor becomes its sum over the ranks. Contiguous CPU tensors of float,
  // double or int64, the same shapes and dtypes on every rank.
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors) = 0;
  virtual std::unique_ptr<PendingReduce> all_reduce_sum_async(at::Tensor tensor) = 0;
  // In place: every rank's tensors become `root`'s.
  virtual void broadcast(std::vector<at::Tensor>& tensors, int root = 0) = 0;
  // Every rank's bytes, indexed by rank, on every rank (sizes may differ).
  virtual std::vector<std::string> all_gather_bytes(const std::string& bytes) = 0;
  virtual void barrier() = 0;
  // Records how far this rank got (e.g. the iteration), so that when a collective fails the
  // message names the ranks that fell behind or vanished.
  virtual void mark_progress(int64_t step) = 0;
};

// One process: sums and broadcasts leave the tensors as they are.
std::unique_ptr<Communicator> single_process();

// Joins the job `env` describes: rendezvous through a TCPStore at MASTER_ADDR:MASTER_PORT (rank 0
// serves it, unless torchrun's agent does), then a Gloo process group on GLOO_SOCKET_IFNAME's
// interfaces (else the host name's). env.world_size == 1 gives single_process(). DistributedError
// naming the address and port when the store cannot be reached within options.timeout, and when
// this build has no Gloo (libgloo-dev missing at build time) but the job has several ranks.
std::unique_ptr<Communicator> join(const LaunchEnvironment& env, const CommunicatorOptions& options = {});

// Test seam: ranks of one job meeting through a file (c10d's FileStore) on loopback, e.g. threads
// of one test process, each joining with its own rank. The file must not exist beforehand.
std::unique_ptr<Communicator> join_through_file(const std::string& path, int rank, int world_size,
                                                const CommunicatorOptions& options = {});

// Convenience on top of the interface.
double all_reduce_sum(Communicator& comm, double value);
// `root`'s bytes on every rank.
std::string broadcast_bytes(Communicator& comm, const std::string& bytes, int root = 0);

}  // namespace instseg::dist
