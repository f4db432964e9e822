// The launch variables of torchrun / Slurm / by hand, read strictly: a typo in RANK or MASTER_PORT
// must stop the job with the variable's name, not start a wrong job (or a single-process one).
#include "instseg/distributed/launch_environment.h"

#include <cerrno>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "instseg/errors.h"

namespace instseg::dist {

namespace {

using Lookup = std::function<std::optional<std::string>(const std::string&)>;

[[noreturn]] void bad(const std::string& name, const std::string& value, const std::string& why) {
  throw ConfigError("environment variable " + name + "='" + value + "': " + why);
}

// A whole decimal number, nothing else: no blanks, no sign other than '-', no trailing text
// (strtol alone would accept " 1" and "2x").
int parse_int(const std::string& name, const std::string& value) {
  if (value.empty()) bad(name, value, "expected a whole number, got an empty value");
  size_t start = value[0] == '-' ? 1 : 0;
  if (start == value.size()) bad(name, value, "expected a whole number");
  for (size_t i = start; i < value.size(); ++i) {
    if (value[i] < '0' || value[i] > '9') bad(name, value, "expected a whole number");
  }
  errno = 0;
  long long parsed = std::strtoll(value.c_str(), nullptr, 10);
  if (errno == ERANGE || parsed > std::numeric_limits<int>::max() || parsed < std::numeric_limits<int>::min()) {
    bad(name, value, "number out of range");
  }
  return static_cast<int>(parsed);
}

std::optional<int> read_int(const Lookup& lookup, const std::string& name) {
  auto value = lookup(name);
  if (!value) return std::nullopt;
  return parse_int(name, *value);
}

}  // namespace

LaunchEnvironment read_launch_environment(const Lookup& lookup) {
  LaunchEnvironment env;
  auto rank_text = lookup("RANK");
  auto world_text = lookup("WORLD_SIZE");
  if (!rank_text && !world_text) return env;  // not launched: one process, whatever else is set
  if (!rank_text) bad("WORLD_SIZE", *world_text, "set without RANK (set both, or neither for one process)");
  if (!world_text) bad("RANK", *rank_text, "set without WORLD_SIZE (set both, or neither for one process)");
  env.launched = true;
  env.world_size = parse_int("WORLD_SIZE", *world_text);
  if (env.world_size < 1) bad("WORLD_SIZE", *world_text, "must be at least 1");
  env.rank = parse_int("RANK", *rank_text);
  if (env.rank < 0 || env.rank >= env.world_size) {
    bad("RANK", *rank_text, "must be in [0, WORLD_SIZE) = [0, " + std::to_string(env.world_size) + ")");
  }
  env.local_rank = read_int(lookup, "LOCAL_RANK").value_or(env.rank);
  if (env.local_rank < 0) bad("LOCAL_RANK", *lookup("LOCAL_RANK"), "must not be negative");

  if (auto addr = lookup("MASTER_ADDR")) {
    if (addr->empty()) bad("MASTER_ADDR", *addr, "empty host name");
    env.master_addr = *addr;
  }
  if (auto port = read_int(lookup, "MASTER_PORT")) {
    if (*port < 1 || *port > 65535) bad("MASTER_PORT", *lookup("MASTER_PORT"), "must be in 1..65535");
    env.master_port = *port;
  }

  // PyTorch's rendezvous compares with str(True); lower case and 1 are what people type by hand.
  if (auto agent = lookup("TORCHELASTIC_USE_AGENT_STORE")) {
    const std::string& v = *agent;
    if (v == "True" || v == "true" || v == "1") {
      env.agent_store = true;
    } else if (v == "False" || v == "false" || v == "0" || v.empty()) {
      env.agent_store = false;
    } else {
      bad("TORCHELASTIC_USE_AGENT_STORE", v, "expected True or False");
    }
  }
  if (auto restarts = read_int(lookup, "TORCHELASTIC_RESTART_COUNT")) {
    if (*restarts < 0) bad("TORCHELASTIC_RESTART_COUNT", *lookup("TORCHELASTIC_RESTART_COUNT"), "must not be negative");
    env.restart_count = *restarts;
  }

  if (auto interfaces = lookup("GLOO_SOCKET_IFNAME")) {
    if (!interfaces->empty()) {
      std::stringstream in(*interfaces);
      std::string item;
      while (std::getline(in, item, ',')) {
        if (item.empty()) bad("GLOO_SOCKET_IFNAME", *interfaces, "empty interface name in the comma list");
        env.socket_interfaces.push_back(item);
      }
      // getline drops a trailing empty item ("eth0,"): it is as wrong as one in the middle.
      if (interfaces->back() == ',') bad("GLOO_SOCKET_IFNAME", *interfaces, "empty interface name in the comma list");
    }
  }
  return env;
}

LaunchEnvironment read_launch_environment() {
  return read_launch_environment([](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  });
}

}  // namespace instseg::dist
