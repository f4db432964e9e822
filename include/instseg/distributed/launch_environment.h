#pragma once
// Where this process stands in a job launched by torchrun, Slurm (through torchrun or by setting
// the variables) or by hand: the variables PyTorch's env:// rendezvous reads. No RANK and no
// WORLD_SIZE: one process, as before.
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace instseg::dist {

struct LaunchEnvironment {
  bool launched = false;        // RANK or WORLD_SIZE was set (a job of one rank is still a job)
  int rank = 0;                 // RANK
  int world_size = 1;           // WORLD_SIZE
  int local_rank = 0;           // LOCAL_RANK (defaults to RANK)
  std::string master_addr = "127.0.0.1";  // MASTER_ADDR: where the rendezvous store listens
  int master_port = 29500;      // MASTER_PORT (torch.distributed's default)
  // TORCHELASTIC_USE_AGENT_STORE=True: torchrun's agent already serves the store on MASTER_PORT,
  // so every rank connects as a client (rank 0 must not bind), under the key prefix
  // "/worker/attempt_<restart_count>" as PyTorch's env:// rendezvous uses.
  bool agent_store = false;
  int restart_count = 0;        // TORCHELASTIC_RESTART_COUNT
  // GLOO_SOCKET_IFNAME, comma separated: Gloo binds these interfaces (one device each); empty:
  // the interface this host's name resolves to.
  std::vector<std::string> socket_interfaces;

  bool distributed() const { return world_size > 1; }
};

// Reads the variables through `lookup` (a name -> its value, or nullopt when unset). ConfigError
// naming the variable and its value: WORLD_SIZE without RANK (or RANK without WORLD_SIZE), a value
// that is not a whole number, RANK outside [0, WORLD_SIZE), a port outside 1..65535.
LaunchEnvironment read_launch_environment(const std::function<std::optional<std::string>(const std::string&)>& lookup);
// The same, from this process's environment.
LaunchEnvironment read_launch_environment();

}  // namespace instseg::dist
