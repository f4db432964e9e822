// The c10d/Gloo communicator, with the ranks of a job as threads of this process: collectives
// against serial sums, joining over TCP as torchrun's variables describe (rank 0 serving the
// store, or torchrun's agent serving it under the attempt prefix), and the faults a job meets
// (a rank that never joins, goes silent, or dies; nothing listening at MASTER_ADDR:MASTER_PORT),
// each of which must end in a DistributedError naming the culprit within the timeout.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <thread>

#include "instseg/distributed/communicator.h"
#include "instseg/errors.h"
#include "support/test_dir.h"

namespace {

using instseg::DistributedError;
using instseg::dist::CommunicatorOptions;
using instseg::dist::Communicator;
using instseg::dist::LaunchEnvironment;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A TCP port nothing listens on right now: bind port 0, read what the kernel chose, close.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Runs body(rank) on one thread per rank and rethrows the first failure. A job that deadlocks
// must not hold CI for ctest's 10 minutes: past `limit` the test program stops.
void run_ranks(int world, const std::function<void(int)>& body, std::chrono::seconds limit = std::chrono::seconds(60)) {
  std::vector<std::future<void>> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(std::async(std::launch::async, body, r));
  auto deadline = Clock::now() + limit;
  for (auto& f : ranks) {
    if (f.wait_until(deadline) != std::future_status::ready) {
      std::cerr << "ranks still running after " << limit.count() << " s: a collective hangs\n";
      std::abort();
    }
  }
  for (auto& f : ranks) f.get();
}

CommunicatorOptions with_timeout(milliseconds timeout) {
  CommunicatorOptions options;
  options.timeout = timeout;
  return options;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Rank r's inputs: different on every rank, drawn from the rank's own generator (threads share
// torch's global one).
std::vector<at::Tensor> inputs_of(int rank) {
  at::Generator gen = at::detail::createCPUGenerator(100 + rank);
  return {torch::randn({3, 4}, gen, torch::kFloat32), torch::randn({5}, gen, torch::kFloat64),
          torch::randint(-1000, 1000, {2, 2}, gen, torch::kInt64), torch::randn({4, 3}, gen, torch::kFloat32).t(),
          torch::randn({2}, gen, torch::kFloat32)};
}

class CollectivesTest : public ::testing::TestWithParam<int> {};

TEST_P(CollectivesTest, SumsEqualTheSerialSums) {
  const int world = GetParam();
  std::vector<at::Tensor> expected = inputs_of(0);
  for (int r = 1; r < world; ++r) {
    auto more = inputs_of(r);
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = expected[i] + more[i];
  }
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::vector<std::vector<at::Tensor>> results(world);
  run_ranks(world, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, world, with_timeout(std::chrono::seconds(20)));
    ASSERT_EQ(comm->rank(), rank);
    ASSERT_EQ(comm->world_size(), world);
    auto tensors = inputs_of(rank);
    comm->all_reduce_sum(tensors);
    results[rank] = tensors;
  });
  for (int r = 0; r < world; ++r) {
    for (size_t i = 0; i < expected.size(); ++i) {
      SCOPED_TRACE("rank " + std::to_string(r) + " tensor " + std::to_string(i));
      ASSERT_EQ(results[r][i].scalar_type(), expected[i].scalar_type());
      ASSERT_EQ(results[r][i].sizes(), expected[i].sizes());
      if (expected[i].scalar_type() == torch::kInt64) {
        EXPECT_TRUE(torch::equal(results[r][i], expected[i]));
      } else {
        // Gloo may add in another order than the serial loop: float rounding only.
        EXPECT_TRUE(torch::allclose(results[r][i], expected[i], 1e-6, 1e-6));
      }
    }
  }
  // The non-contiguous tensor (index 3) is written through its own strides.
  EXPECT_FALSE(results[0][3].is_contiguous());
}

TEST_P(CollectivesTest, AsyncSumEqualsTheSerialSum) {
  const int world = GetParam();
  at::Tensor expected = torch::zeros({6, 5}, torch::kFloat64);
  for (int r = 0; r < world; ++r) expected += torch::arange(30, torch::kFloat64).view({6, 5}) * (r + 1);
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::vector<at::Tensor> contiguous(world), strided(world);
  run_ranks(world, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, world, with_timeout(std::chrono::seconds(20)));
    contiguous[rank] = torch::arange(30, torch::kFloat64).view({6, 5}) * (rank + 1);
    strided[rank] = (torch::arange(30, torch::kFloat64).view({5, 6}) * (rank + 1)).t();  // [6, 5]
    auto first = comm->all_reduce_sum_async(contiguous[rank]);
    auto second = comm->all_reduce_sum_async(strided[rank]);
    first->wait();
    second->wait();
  });
  at::Tensor expected_strided = torch::zeros({6, 5}, torch::kFloat64);
  for (int r = 0; r < world; ++r) expected_strided += (torch::arange(30, torch::kFloat64).view({5, 6}) * (r + 1)).t();
  for (int r = 0; r < world; ++r) {
    EXPECT_TRUE(torch::allclose(contiguous[r], expected, 0, 1e-12)) << "rank " << r;
    EXPECT_TRUE(torch::allclose(strided[r], expected_strided, 0, 1e-12)) << "rank " << r;
  }
}

TEST_P(CollectivesTest, BroadcastGivesEveryRankTheRootsTensors) {
  const int world = GetParam();
  const int root = 1;
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::vector<std::vector<at::Tensor>> results(world);
  std::vector<at::Tensor> single(world);
  run_ranks(world, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, world, with_timeout(std::chrono::seconds(20)));
    results[rank] = inputs_of(rank);
    comm->broadcast(results[rank], root);
    single[rank] = torch::full({7}, static_cast<int64_t>(rank * 10 + 3), torch::kInt64);
    std::vector<at::Tensor> one = {single[rank]};
    comm->broadcast(one, root);
  });
  auto expected = inputs_of(root);
  for (int r = 0; r < world; ++r) {
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_TRUE(torch::equal(results[r][i], expected[i])) << "rank " << r << " tensor " << i;
    }
    EXPECT_TRUE(torch::equal(single[r], torch::full({7}, int64_t{13}, torch::kInt64))) << "rank " << r;
  }
}

TEST_P(CollectivesTest, AllGatherBytesReturnsEveryRanksBytesInRankOrder) {
  const int world = GetParam();
  // Rank 0 sends nothing; the others different lengths, with a zero byte inside.
  auto bytes_of = [](int rank) {
    std::string s(static_cast<size_t>(rank * 3), static_cast<char>('a' + rank));
    if (rank > 0) s[1] = '\0';
    return s;
  };
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::vector<std::vector<std::string>> gathered(world), all_empty(world);
  run_ranks(world, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, world, with_timeout(std::chrono::seconds(20)));
    gathered[rank] = comm->all_gather_bytes(bytes_of(rank));
    all_empty[rank] = comm->all_gather_bytes("");
  });
  for (int r = 0; r < world; ++r) {
    ASSERT_EQ(gathered[r].size(), static_cast<size_t>(world));
    for (int from = 0; from < world; ++from) EXPECT_EQ(gathered[r][from], bytes_of(from)) << r << " from " << from;
    EXPECT_EQ(all_empty[r], std::vector<std::string>(world, ""));
  }
}

TEST_P(CollectivesTest, ConvenienceSumAndBroadcastBytes) {
  const int world = GetParam();
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::vector<double> sums(world);
  std::vector<std::string> received(world);
  run_ranks(world, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, world, with_timeout(std::chrono::seconds(20)));
    sums[rank] = instseg::dist::all_reduce_sum(*comm, 0.25 + rank);
    received[rank] = instseg::dist::broadcast_bytes(*comm, "from rank " + std::to_string(rank), 1);
    comm->barrier();
  });
  double expected = 0;
  for (int r = 0; r < world; ++r) expected += 0.25 + r;
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(sums[r], expected);
    EXPECT_EQ(received[r], "from rank 1");
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, CollectivesTest, ::testing::Values(2, 3),
                         [](const auto& info) { return std::to_string(info.param) + "Ranks"; });

TEST(SingleProcess, CollectivesLeaveValuesUnchanged) {
  auto comm = instseg::dist::single_process();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world_size(), 1);
  EXPECT_TRUE(comm->is_main());
  auto tensors = inputs_of(0);
  auto copies = inputs_of(0);
  comm->all_reduce_sum(tensors);
  comm->all_reduce_sum_async(tensors[0])->wait();
  comm->broadcast(tensors, 0);
  for (size_t i = 0; i < tensors.size(); ++i) EXPECT_TRUE(torch::equal(tensors[i], copies[i])) << i;
  EXPECT_EQ(comm->all_gather_bytes("abc"), std::vector<std::string>{"abc"});
  EXPECT_EQ(instseg::dist::all_reduce_sum(*comm, 2.5), 2.5);
  EXPECT_EQ(instseg::dist::broadcast_bytes(*comm, "xyz"), "xyz");
  // A launched job of one rank is the same communicator: join() binds no port.
  LaunchEnvironment env;
  env.launched = true;
  env.master_port = free_port();
  auto joined = instseg::dist::join(env);
  EXPECT_EQ(joined->world_size(), 1);
}

LaunchEnvironment tcp_env(int rank, int world, int port) {
  LaunchEnvironment env;
  env.launched = true;
  env.rank = rank;
  env.world_size = world;
  env.local_rank = rank;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  return env;
}

TEST(Join, OverTcpRankZeroServesTheStore) {
  const int port = free_port();
  std::vector<double> sums(2);
  run_ranks(2, [&](int rank) {
    auto env = tcp_env(rank, 2, port);
    if (rank == 1) env.socket_interfaces = {"lo"};  // GLOO_SOCKET_IFNAME=lo; rank 0 the host name's address
    auto comm = instseg::dist::join(env, with_timeout(std::chrono::seconds(20)));
    EXPECT_EQ(comm->rank(), rank);
    comm->mark_progress(1);
    sums[rank] = instseg::dist::all_reduce_sum(*comm, rank + 1.5);
  });
  EXPECT_EQ(sums[0], 4.0);
  EXPECT_EQ(sums[1], 4.0);
}

// torchrun --master_addr/--master_port: its agent serves the store; every rank is a client and
// keeps its keys under /worker/attempt_<restart count>, as PyTorch's env:// rendezvous does.
TEST(Join, WithTorchrunsAgentStoreEveryRankIsAClientUnderTheAttemptPrefix) {
  const int port = free_port();
  c10d::TCPStoreOptions agent_options;
  agent_options.port = static_cast<std::uint16_t>(port);
  agent_options.isServer = true;
  agent_options.waitWorkers = false;
  agent_options.timeout = std::chrono::seconds(20);
  auto agent = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", agent_options);
  std::vector<double> sums(2);
  run_ranks(2, [&](int rank) {
    auto env = tcp_env(rank, 2, port);
    env.agent_store = true;
    env.restart_count = 3;
    auto comm = instseg::dist::join(env, with_timeout(std::chrono::seconds(20)));
    sums[rank] = instseg::dist::all_reduce_sum(*comm, rank + 1.5);
    comm->mark_progress(7 + rank);
    comm->barrier();  // both progress keys are written before either rank leaves
  });
  EXPECT_EQ(sums[0], 4.0);
  EXPECT_EQ(sums[1], 4.0);
  // The ranks' keys are in the agent's store, under this attempt's prefix only.
  ASSERT_TRUE(agent->check({"/worker/attempt_3/instseg/progress/1"}));
  auto value = agent->get("/worker/attempt_3/instseg/progress/1");
  EXPECT_EQ(std::string(value.begin(), value.end()), "8");
  EXPECT_FALSE(agent->check({"instseg/progress/1"}));
  EXPECT_FALSE(agent->check({"/worker/attempt_0/instseg/progress/1"}));
}

// ---- faults: each ends in a DistributedError naming the culprit, within the timeout ----

constexpr milliseconds kShortTimeout{2000};
// Slack for the failing rank's look at the others' progress (1.5 s) and a loaded 2-core machine.
constexpr double kSlackSeconds = 6.0;

TEST(Faults, RankThatNeverJoinsFailsRankZeroWithinTheTimeout) {
  const int port = free_port();
  auto start = Clock::now();
  try {
    instseg::dist::join(tcp_env(0, 2, port), with_timeout(kShortTimeout));
    FAIL() << "joined a job of 2 with one rank";
  } catch (const DistributedError& e) {
    std::string message = e.what();
    EXPECT_THAT(message, HasSubstr("rank 0: joining the job failed: rank(s) 1 did not reach the store at 127.0.0.1:" +
                                   std::to_string(port)));
    EXPECT_THAT(message, HasSubstr("within the timeout of 2 s"));
  }
  double took = seconds_since(start);
  EXPECT_GE(took, 1.5);  // it waited for the missing rank, roughly the timeout
  EXPECT_LT(took, 2.0 + kSlackSeconds);
}

TEST(Faults, UnknownSocketInterfaceIsNamedBeforeTheRendezvous) {
  auto env = tcp_env(0, 2, free_port());
  env.socket_interfaces = {"lo", "nosuchif7"};
  auto start = Clock::now();
  try {
    instseg::dist::join(env, with_timeout(kShortTimeout));
    FAIL() << "joined with an interface that does not exist";
  } catch (const DistributedError& e) {
    EXPECT_THAT(e.what(), HasSubstr("rank 0: GLOO_SOCKET_IFNAME: cannot use network interface 'nosuchif7'"));
  }
  EXPECT_LT(seconds_since(start), 1.0);  // no wait for the other rank
}

TEST(Faults, NothingListeningAtMasterAddrFailsWithinTheTimeout) {
  const int port = free_port();
  auto start = Clock::now();
  try {
    instseg::dist::join(tcp_env(1, 2, port), with_timeout(kShortTimeout));
    FAIL() << "joined a store nobody serves";
  } catch (const DistributedError& e) {
    std::string message = e.what();
    EXPECT_THAT(message, HasSubstr("rank 1: joining the job failed while connecting to the store at 127.0.0.1:" +
                                   std::to_string(port)));
    EXPECT_THAT(message, HasSubstr("timeout 2 s"));
  }
  EXPECT_LT(seconds_since(start), 2.0 + kSlackSeconds);
}

TEST(Faults, SilentRankIsNamedWhenTheCollectiveTimesOut) {
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::promise<void> rank0_done;
  auto rank0_finished = rank0_done.get_future().share();
  std::string message;
  double took = 0;
  run_ranks(2, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, 2, with_timeout(kShortTimeout));
    comm->mark_progress(1);
    instseg::dist::all_reduce_sum(*comm, 1.0);
    if (rank == 1) {  // stops calling collectives, stays alive until rank 0 has given up
      rank0_finished.wait();
      return;
    }
    comm->mark_progress(2);
    auto start = Clock::now();
    try {
      instseg::dist::all_reduce_sum(*comm, 1.0);
    } catch (const DistributedError& e) {
      message = e.what();
    }
    took = seconds_since(start);
    rank0_done.set_value();
  });
  EXPECT_THAT(message, HasSubstr("rank 0: all_reduce_sum failed: "));
  EXPECT_THAT(message, HasSubstr("rank 1 fell behind: it is at step 1, this rank at step 2"));
  EXPECT_GE(took, 1.5);
  EXPECT_LT(took, 2.0 + kSlackSeconds);
}

TEST(Faults, RankWhoseCommunicatorIsDestroyedIsNamed) {
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::promise<void> rank1_gone;
  auto gone = rank1_gone.get_future().share();
  std::string message;
  double took = 0;
  run_ranks(2, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, 2, with_timeout(kShortTimeout));
    comm->mark_progress(4);
    instseg::dist::all_reduce_sum(*comm, 1.0);
    if (rank == 1) {  // dies: its sockets close
      comm.reset();
      rank1_gone.set_value();
      return;
    }
    gone.wait();
    auto start = Clock::now();
    try {
      instseg::dist::all_reduce_sum(*comm, 1.0);
    } catch (const DistributedError& e) {
      message = e.what();
    }
    took = seconds_since(start);
  });
  EXPECT_THAT(message, HasSubstr("rank 0: all_reduce_sum failed: "));
  EXPECT_THAT(message, HasSubstr("rank 1 left the job (closed its communicator at step 4)"));
  EXPECT_LT(took, 2.0 + kSlackSeconds);
}

// A rank ended by an exception (any, not only the communicator's) says so on its way out.
TEST(Faults, RankEndedByAnExceptionIsNamedAsFailed) {
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::promise<void> rank1_gone;
  auto gone = rank1_gone.get_future().share();
  std::string message;
  run_ranks(2, [&](int rank) {
    if (rank == 1) {
      try {
        auto comm = instseg::dist::join_through_file(path, rank, 2, with_timeout(kShortTimeout));
        comm->mark_progress(4);
        instseg::dist::all_reduce_sum(*comm, 1.0);
        throw std::runtime_error("loss is NaN");  // unwinds through the communicator
      } catch (const std::runtime_error&) {
      }
      rank1_gone.set_value();
      return;
    }
    auto comm = instseg::dist::join_through_file(path, rank, 2, with_timeout(kShortTimeout));
    comm->mark_progress(4);
    instseg::dist::all_reduce_sum(*comm, 1.0);
    gone.wait();
    try {
      instseg::dist::all_reduce_sum(*comm, 1.0);
    } catch (const DistributedError& e) {
      message = e.what();
    }
  });
  EXPECT_THAT(message, HasSubstr("rank 0: all_reduce_sum failed: "));
  EXPECT_THAT(message, HasSubstr("rank 1 failed: stopped with an error"));
}

// Rank 0 serves the store: when it goes, the store goes with it, and the others say so.
TEST(Faults, RankZeroGoneTakesTheStoreAndIsNamed) {
  const int port = free_port();
  std::promise<void> rank0_gone;
  auto gone = rank0_gone.get_future().share();
  std::string message;
  double took = 0;
  run_ranks(2, [&](int rank) {
    auto comm = instseg::dist::join(tcp_env(rank, 2, port), with_timeout(kShortTimeout));
    comm->mark_progress(1);
    instseg::dist::all_reduce_sum(*comm, 1.0);
    if (rank == 0) {
      comm.reset();
      rank0_gone.set_value();
      return;
    }
    gone.wait();
    auto start = Clock::now();
    try {
      instseg::dist::all_reduce_sum(*comm, 1.0);
    } catch (const DistributedError& e) {
      message = e.what();
    }
    took = seconds_since(start);
  });
  EXPECT_THAT(message, HasSubstr("rank 1: all_reduce_sum failed: "));
  EXPECT_THAT(message, HasSubstr("rank 0"));
  EXPECT_LT(took, 2.0 + kSlackSeconds);
}

// A communicator going away while the other rank hangs, with a reduce still in flight, returns
// within the timeout (Gloo fails the reduce) rather than waiting for the silent rank forever.
TEST(Faults, DestructorIsBoundedWhileAPeerIsSilent) {
  instseg::testing::TestDir dir;
  std::string path = dir / "store";  // a FileStore file that does not exist yet
  std::promise<void> rank0_done;
  auto rank0_finished = rank0_done.get_future().share();
  double took = -1;
  run_ranks(2, [&](int rank) {
    auto comm = instseg::dist::join_through_file(path, rank, 2, with_timeout(kShortTimeout));
    if (rank == 1) {
      rank0_finished.wait();
      return;
    }
    at::Tensor t = torch::ones({1000});
    auto pending = comm->all_reduce_sum_async(t);
    auto start = Clock::now();
    pending.reset();
    comm.reset();
    took = seconds_since(start);
    rank0_done.set_value();
  });
  EXPECT_GE(took, 0.0);
  EXPECT_LT(took, 2.0 + kSlackSeconds);
}

}  // namespace
