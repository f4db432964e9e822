// The launch variables (torchrun, Slurm, by hand): what each one sets, and one ConfigError naming
// the variable and its value for every way of getting them wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "instseg/distributed/launch_environment.h"
#include "instseg/errors.h"

namespace {

using instseg::ConfigError;
using instseg::dist::LaunchEnvironment;
using instseg::dist::read_launch_environment;
using ::testing::HasSubstr;
using Variables = std::map<std::string, std::string>;

LaunchEnvironment read(const Variables& variables) {
  return read_launch_environment([&](const std::string& name) -> std::optional<std::string> {
    auto it = variables.find(name);
    if (it == variables.end()) return std::nullopt;
    return it->second;
  });
}

// The ConfigError's message for these variables ("" when none was thrown).
std::string error_of(const Variables& variables) {
  try {
    read(variables);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(LaunchEnvironment, NoVariablesMeansOneProcess) {
  auto env = read({{"MASTER_ADDR", "10.0.0.1"}, {"GLOO_SOCKET_IFNAME", "eth0"}});
  EXPECT_FALSE(env.launched);
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_FALSE(env.distributed());
}

TEST(LaunchEnvironment, ReadsEveryVariable) {
  auto env = read({{"RANK", "3"},
                   {"WORLD_SIZE", "4"},
                   {"LOCAL_RANK", "1"},
                   {"MASTER_ADDR", "node-a.cluster"},
                   {"MASTER_PORT", "29511"},
                   {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                   {"TORCHELASTIC_RESTART_COUNT", "2"},
                   {"GLOO_SOCKET_IFNAME", "eth0,ib0"}});
  EXPECT_TRUE(env.launched);
  EXPECT_TRUE(env.distributed());
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_addr, "node-a.cluster");
  EXPECT_EQ(env.master_port, 29511);
  EXPECT_TRUE(env.agent_store);
  EXPECT_EQ(env.restart_count, 2);
  EXPECT_EQ(env.socket_interfaces, (std::vector<std::string>{"eth0", "ib0"}));
}

TEST(LaunchEnvironment, DefaultsOfALaunchedJob) {
  auto env = read({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  EXPECT_TRUE(env.launched);
  EXPECT_EQ(env.local_rank, 1);  // LOCAL_RANK defaults to RANK
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  EXPECT_EQ(env.master_port, 29500);
  EXPECT_FALSE(env.agent_store);
  EXPECT_EQ(env.restart_count, 0);
  EXPECT_TRUE(env.socket_interfaces.empty());
  // A job of one rank is still a launched job, but not a distributed one.
  auto one = read({{"RANK", "0"}, {"WORLD_SIZE", "1"}});
  EXPECT_TRUE(one.launched);
  EXPECT_FALSE(one.distributed());
}

TEST(LaunchEnvironment, AgentStoreSpellings) {
  for (const char* yes : {"True", "true", "1"}) {
    EXPECT_TRUE(read({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", yes}}).agent_store) << yes;
  }
  for (const char* no : {"False", "false", "0"}) {
    EXPECT_FALSE(read({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", no}}).agent_store) << no;
  }
  EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", "yes"}}),
              HasSubstr("TORCHELASTIC_USE_AGENT_STORE='yes'"));
}

TEST(LaunchEnvironment, RankAndWorldSizeComeTogether) {
  EXPECT_THAT(error_of({{"WORLD_SIZE", "2"}}), HasSubstr("WORLD_SIZE='2': set without RANK"));
  EXPECT_THAT(error_of({{"RANK", "0"}}), HasSubstr("RANK='0': set without WORLD_SIZE"));
}

TEST(LaunchEnvironment, NonIntegersNameTheVariable) {
  for (const char* bad : {"2x", "", " 1", "1 ", "+1", "0x2", "1.0", "99999999999"}) {
    SCOPED_TRACE(std::string("value '") + bad + "'");
    EXPECT_THAT(error_of({{"RANK", bad}, {"WORLD_SIZE", "2"}}), HasSubstr(std::string("RANK='") + bad + "'"));
    EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", bad}}), HasSubstr(std::string("WORLD_SIZE='") + bad + "'"));
    EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", bad}}),
                HasSubstr(std::string("LOCAL_RANK='") + bad + "'"));
    EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", bad}}),
                HasSubstr(std::string("MASTER_PORT='") + bad + "'"));
    EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_RESTART_COUNT", bad}}),
                HasSubstr(std::string("TORCHELASTIC_RESTART_COUNT='") + bad + "'"));
  }
}

TEST(LaunchEnvironment, RanksOutOfRange) {
  EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "0"}}), HasSubstr("WORLD_SIZE='0'"));
  EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "-2"}}), HasSubstr("WORLD_SIZE='-2'"));
  EXPECT_THAT(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), HasSubstr("RANK='2': must be in [0, WORLD_SIZE) = [0, 2)"));
  EXPECT_THAT(error_of({{"RANK", "-1"}, {"WORLD_SIZE", "2"}}), HasSubstr("RANK='-1'"));
  EXPECT_EQ(read({{"RANK", "1"}, {"WORLD_SIZE", "2"}}).rank, 1);  // the last rank is fine
  EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "-1"}}), HasSubstr("LOCAL_RANK='-1'"));
  EXPECT_EQ(read({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}).local_rank, 0);
}

TEST(LaunchEnvironment, PortRange) {
  for (const char* bad : {"0", "65536", "-5"}) {
    EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", bad}}),
                HasSubstr(std::string("MASTER_PORT='") + bad + "': must be in 1..65535"));
  }
  EXPECT_EQ(read({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}).master_port, 1);
  EXPECT_EQ(read({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "65535"}}).master_port, 65535);
}

TEST(LaunchEnvironment, SocketInterfacesRejectEmptyItems) {
  for (const char* bad : {"eth0,", ",eth0", "eth0,,ib0", ","}) {
    EXPECT_THAT(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"GLOO_SOCKET_IFNAME", bad}}),
                HasSubstr(std::string("GLOO_SOCKET_IFNAME='") + bad + "'"));
  }
  EXPECT_EQ(read({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"GLOO_SOCKET_IFNAME", "lo"}}).socket_interfaces,
            std::vector<std::string>{"lo"});
}

TEST(LaunchEnvironment, ReadsThisProcesssEnvironment) {
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "3", 1);
  ::setenv("MASTER_PORT", "1234", 1);
  auto env = read_launch_environment();
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("MASTER_PORT");
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.world_size, 3);
  EXPECT_EQ(env.master_port, 1234);
  EXPECT_FALSE(read_launch_environment().launched);
}

}  // namespace
