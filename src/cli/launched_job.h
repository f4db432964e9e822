#pragma once
// The job a command runs in when torchrun, Slurm or the user set the launch variables (RANK,
// WORLD_SIZE, MASTER_ADDR, ...: distributed/launch_environment.h): its communicator, or null for
// one process (no variables, or WORLD_SIZE=1).
#include <chrono>
#include <cstdint>
#include <memory>

#include "instseg/distributed/communicator.h"
#include "instseg/distributed/launch_environment.h"

namespace instseg::cli {

// The help text of the --dist-timeout option of the commands that run in a job.
inline constexpr const char* kDistTimeoutHelp =
    "In a launched job (torchrun, Slurm): seconds to wait for the other ranks when joining and at "
    "each exchange before failing with a message naming them";

// ConfigError for malformed variables, DistributedError when the job cannot be joined in time.
inline std::unique_ptr<dist::Communicator> join_launched_job(int timeout_seconds) {
  const dist::LaunchEnvironment env = dist::read_launch_environment();
  if (!env.distributed()) return nullptr;
  dist::CommunicatorOptions options;
  options.timeout = std::chrono::seconds(timeout_seconds);
  return dist::join(env, options);
}

}  // namespace instseg::cli
