// The communicator of a job of several processes: LibTorch's c10d ProcessGroupGloo over a
// TCPStore rendezvous (as torch.distributed's env:// init does), or over a FileStore for tests.
// Every c10d / Gloo failure becomes a DistributedError that says which collective failed and, from
// the progress each rank writes into the store, which ranks fell behind, left or failed themselves.
#include <torch/torch.h>

// INSTSEG_WITHOUT_GLOO builds the fallback even where libgloo-dev is installed (to check that it compiles).
#if __has_include(<gloo/config.h>) && !defined(INSTSEG_WITHOUT_GLOO)
// ProcessGroupGloo.hpp's body is compiled only with this set (Torch's CMake targets add it).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define INSTSEG_HAVE_GLOO 1
#else
#define INSTSEG_HAVE_GLOO 0
#endif
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "instseg/distributed/communicator.h"
#include "instseg/errors.h"

namespace instseg::dist {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long a failing rank looks for the others' reports in the store before it gives up: long
// enough for a rank that failed in the same collective to write its own report, short against
// the collective timeout.
constexpr milliseconds kDiagnosisTime{1500};
// Store writes on the way out (a rank leaving or failing) never hold the process longer.
constexpr milliseconds kFarewellTime{1000};

std::string seconds(milliseconds ms) {
  std::ostringstream out;
  out << static_cast<double>(ms.count()) / 1000.0 << " s";
  return out.str();
}

// c10::Error's what() carries a C++ backtrace, Gloo's the source line: the first line says it.
std::string first_line(const std::exception& e) {
  std::string text;
  if (auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    text = c10_error->what_without_backtrace();
  } else {
    text = e.what();
  }
  auto end = text.find('\n');
  if (end != std::string::npos) text.resize(end);
  return text;
}

std::vector<uint8_t> to_bytes(const std::string& text) { return {text.begin(), text.end()}; }
std::string from_bytes(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

// Runs `task` on its own thread and waits at most `limit`: a store whose server is stopped (not
// dead) can block a request forever, and a failing rank must still fail in bounded time. The task
// keeps what it uses alive by value; a task still blocked after `limit` is left behind.
bool run_bounded(std::function<void()> task, milliseconds limit) {
  struct State {
    std::mutex mutex;
    std::condition_variable done_cv;
    bool done = false;
  };
  auto state = std::make_shared<State>();
  std::thread([state, task = std::move(task)] {
    try {
      task();
    } catch (...) {  // the caller learns of failures through what the task writes
    }
    std::lock_guard<std::mutex> lock(state->mutex);
    state->done = true;
    state->done_cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->mutex);
  return state->done_cv.wait_for(lock, limit, [&] { return state->done; });
}

// Store keys of this layer (under the job's prefix when torchrun's agent serves the store).
std::string progress_key(int rank) { return "instseg/progress/" + std::to_string(rank); }
std::string failed_key(int rank) { return "instseg/failed/" + std::to_string(rank); }
std::string left_key(int rank) { return "instseg/left/" + std::to_string(rank); }
std::string joined_key(int rank) { return "instseg/joined/" + std::to_string(rank); }

#if INSTSEG_HAVE_GLOO

// A torch tensor as the collectives want it: dense, on the CPU.
void check_cpu_dense(const at::Tensor& t, const char* what) {
  if (!t.defined() || t.device().type() != at::kCPU || t.layout() != at::kStrided) {
    throw DistributedError(std::string(what) + ": expected defined dense CPU tensors");
  }
}

struct RankReport {
  std::optional<int64_t> progress;
  std::optional<std::string> failed;
  std::optional<std::string> left;
};

class GlooCommunicator;

// Waits through its communicator (for the failure message), which must outlive it, as a c10d
// Work needs its process group.
class GlooPending : public PendingReduce {
 public:
  GlooPending(GlooCommunicator* comm, c10::intrusive_ptr<c10d::Work> work, at::Tensor target, at::Tensor buffer)
      : comm_(comm), work_(std::move(work)), target_(std::move(target)), buffer_(std::move(buffer)) {}
  void wait() override;

 private:
  GlooCommunicator* comm_;
  c10::intrusive_ptr<c10d::Work> work_;
  at::Tensor target_, buffer_;  // buffer_ differs from target_ when target_ is not contiguous
};

class GlooCommunicator : public Communicator {
 public:
  // `store_gone` is the message for a store that stops answering (it names who serves it).
  GlooCommunicator(int rank, int world, c10::intrusive_ptr<c10d::Store> store,
                   c10::intrusive_ptr<c10d::ProcessGroupGloo> group, std::string store_gone,
                   const CommunicatorOptions& options)
      : rank_(rank),
        world_(world),
        store_(std::move(store)),
        group_(std::move(group)),
        store_gone_(std::move(store_gone)),
        options_(options) {}

  ~GlooCommunicator() override {
    // Tell the others why this rank goes: a rank unwinding with an exception failed, any other
    // left on purpose. Best effort and bounded: the store may be gone already.
    bool unwinding = std::uncaught_exceptions() > 0;
    if (!reported_failure_) {
      auto store = store_;
      std::string key = unwinding ? failed_key(rank_) : left_key(rank_);
      std::string value = unwinding ? "stopped with an error" : std::to_string(progress_);
      run_bounded([store, key, value] { store->set(key, to_bytes(value)); }, kFarewellTime);
    }
    // The process group's destructor waits for queued work, which Gloo's own timeout bounds.
    group_.reset();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void all_reduce_sum(std::vector<at::Tensor>& tensors) override {
    // c10d reads a list of tensors as one tensor per device (it would add them together), so each
    // dtype's tensors travel as one flat buffer: one collective per dtype, in first-seen order
    // (the same order on every rank, since every rank passes the same shapes and dtypes).
    std::vector<at::ScalarType> dtypes;
    for (const auto& t : tensors) {
      check_cpu_dense(t, "all_reduce_sum");
      if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) dtypes.push_back(t.scalar_type());
    }
    for (auto dtype : dtypes) {
      std::vector<at::Tensor> group;
      for (auto& t : tensors) {
        if (t.scalar_type() == dtype) group.push_back(t);
      }
      at::Tensor flat;
      if (group.size() == 1 && group[0].is_contiguous()) {
        flat = group[0];
      } else {
        std::vector<at::Tensor> pieces;
        for (auto& t : group) pieces.push_back(t.reshape({-1}));
        flat = at::cat(pieces);
      }
      std::vector<at::Tensor> list = {flat};
      run("all_reduce_sum", [&] { return group_->allreduce(list, sum_options()); });
      if (!flat.is_same(group[0])) {
        int64_t offset = 0;
        for (auto& t : group) {
          t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
          offset += t.numel();
        }
      }
    }
  }

  std::unique_ptr<PendingReduce> all_reduce_sum_async(at::Tensor tensor) override {
    check_cpu_dense(tensor, "all_reduce_sum_async");
    at::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
    std::vector<at::Tensor> list = {buffer};
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = group_->allreduce(list, sum_options());
    } catch (const std::exception& e) {
      fail("all_reduce_sum_async", e);
    }
    return std::make_unique<GlooPending>(this, std::move(work), tensor, buffer);
  }

  void broadcast(std::vector<at::Tensor>& tensors, int root) override {
    if (root < 0 || root >= world_) {
      throw DistributedError("broadcast: root " + std::to_string(root) + " is not a rank of a job of " +
                             std::to_string(world_));
    }
    for (const auto& t : tensors) check_cpu_dense(t, "broadcast");
    if (tensors.empty()) return;
    if (tensors.size() == 1 && tensors[0].is_contiguous()) {
      std::vector<at::Tensor> list = {tensors[0]};
      run("broadcast", [&] { return group_->broadcast(list, broadcast_options(root)); });
      return;
    }
    // Broadcast copies bytes whatever they mean: all tensors go as one byte buffer.
    int64_t total = 0;
    for (const auto& t : tensors) total += t.numel() * static_cast<int64_t>(t.element_size());
    at::Tensor bytes = at::empty({total}, at::kByte);
    int64_t offset = 0;
    std::vector<at::Tensor> dense;
    for (const auto& t : tensors) {
      dense.push_back(t.contiguous());
      size_t n = static_cast<size_t>(t.numel()) * t.element_size();
      if (n > 0) std::memcpy(bytes.data_ptr<uint8_t>() + offset, dense.back().data_ptr(), n);
      offset += static_cast<int64_t>(n);
    }
    std::vector<at::Tensor> list = {bytes};
    run("broadcast", [&] { return group_->broadcast(list, broadcast_options(root)); });
    offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      size_t n = static_cast<size_t>(tensors[i].numel()) * tensors[i].element_size();
      if (n > 0) std::memcpy(dense[i].data_ptr(), bytes.data_ptr<uint8_t>() + offset, n);
      if (!dense[i].is_same(tensors[i])) tensors[i].copy_(dense[i]);
      offset += static_cast<int64_t>(n);
    }
  }

  std::vector<std::string> all_gather_bytes(const std::string& bytes) override {
    // Sizes first, then every rank's bytes padded to the largest.
    std::vector<at::Tensor> size_in = {at::full({1}, static_cast<int64_t>(bytes.size()), at::kLong)};
    std::vector<std::vector<at::Tensor>> size_out(1);
    for (int r = 0; r < world_; ++r) size_out[0].push_back(at::zeros({1}, at::kLong));
    run("all_gather_bytes", [&] { return group_->allgather(size_out, size_in); });
    int64_t longest = 0;
    std::vector<int64_t> sizes;
    for (auto& s : size_out[0]) {
      sizes.push_back(s.item<int64_t>());
      longest = std::max(longest, sizes.back());
    }
    std::vector<std::string> result(world_);
    if (longest == 0) return result;
    std::vector<at::Tensor> data_in = {at::zeros({longest}, at::kByte)};
    if (!bytes.empty()) std::memcpy(data_in[0].data_ptr<uint8_t>(), bytes.data(), bytes.size());
    std::vector<std::vector<at::Tensor>> data_out(1);
    for (int r = 0; r < world_; ++r) data_out[0].push_back(at::zeros({longest}, at::kByte));
    run("all_gather_bytes", [&] { return group_->allgather(data_out, data_in); });
    for (int r = 0; r < world_; ++r) {
      const char* data = reinterpret_cast<const char*>(data_out[0][r].data_ptr<uint8_t>());
      result[r].assign(data, static_cast<size_t>(sizes[r]));
    }
    return result;
  }

  void barrier() override {
    run("barrier", [&] { return group_->barrier(); });
  }

  void mark_progress(int64_t step) override {
    if (step == progress_) return;  // one store write per new value
    try {
      store_->set(progress_key(rank_), to_bytes(std::to_string(step)));
    } catch (const std::exception& e) {
      throw DistributedError("rank " + std::to_string(rank_) + ": recording progress failed: " + first_line(e) +
                             "; " + store_gone_);
    }
    progress_ = step;
  }

  // Waits for a started collective; every failure leaves as a DistributedError.
  void wait(const char* what, const c10::intrusive_ptr<c10d::Work>& work) {
    try {
      // Gloo fails a collective after options.timeout itself; the margin only guards against a
      // work item that never finishes.
      work->wait(options_.timeout + std::chrono::seconds(5));
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }

 private:
  static c10d::AllreduceOptions sum_options() {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    return o;
  }
  static c10d::BroadcastOptions broadcast_options(int root) {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.rootTensor = 0;
    return o;
  }

  template <class Start>
  void run(const char* what, Start&& start) {
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = start();
    } catch (const std::exception& e) {
      fail(what, e);
    }
    wait(what, work);
  }

  [[noreturn]] void fail(const char* what, const std::exception& e) {
    std::string cause = first_line(e);
    std::string message = "rank " + std::to_string(rank_) + ": " + what + " failed: " + cause + " (timeout " +
                          seconds(options_.timeout) + ")";
    // Say it first, so that ranks failing in the same collective name this one as failed rather
    // than as silent.
    reported_failure_ = true;
    auto store = store_;
    std::string own_key = failed_key(rank_);
    run_bounded([store, own_key, message] { store->set(own_key, to_bytes(message)); }, kFarewellTime);
    throw DistributedError(message + "; " + diagnose());
  }

  // Reads the other ranks' reports for up to kDiagnosisTime and names those behind this rank,
  // gone, or failed. The store's requests run on a helper thread so that a stopped store cannot
  // hold this rank.
  std::string diagnose() {
    struct Shared {
      std::mutex mutex;
      std::map<int, RankReport> reports;
      bool store_error = false;
    };
    auto shared = std::make_shared<Shared>();
    auto store = store_;
    int rank = rank_, world = world_;
    int64_t mine = progress_;
    bool finished = run_bounded(
        [shared, store, rank, world, mine] {
          auto deadline = Clock::now() + kDiagnosisTime;
          for (;;) {
            std::map<int, RankReport> reports;
            bool all_explained = true;
            try {
              for (int r = 0; r < world; ++r) {
                if (r == rank) continue;
                RankReport report;
                auto read = [&](const std::string& key) -> std::optional<std::string> {
                  if (!store->check({key})) return std::nullopt;
                  return from_bytes(store->get(key));
                };
                if (auto p = read(progress_key(r))) report.progress = std::stoll(*p);
                report.failed = read(failed_key(r));
                report.left = read(left_key(r));
                bool behind = mine >= 0 && (!report.progress || *report.progress < mine);
                if (!report.failed && !report.left && !behind) all_explained = false;
                reports[r] = report;
              }
            } catch (...) {
              std::lock_guard<std::mutex> lock(shared->mutex);
              shared->store_error = true;
              return;
            }
            {
              std::lock_guard<std::mutex> lock(shared->mutex);
              shared->reports = reports;
            }
            if (all_explained || Clock::now() >= deadline) return;
            std::this_thread::sleep_for(milliseconds(100));
          }
        },
        kDiagnosisTime + milliseconds(500));
    std::lock_guard<std::mutex> lock(shared->mutex);
    if (shared->store_error || !finished) return store_gone_;
    std::vector<std::string> parts;
    for (const auto& [r, report] : shared->reports) {
      std::string who = "rank " + std::to_string(r);
      if (report.failed) {
        parts.push_back(who + " failed: " + *report.failed);
      } else if (report.left) {
        std::string step = *report.left == "-1" ? "" : " at step " + *report.left;
        parts.push_back(who + " left the job (closed its communicator" + step + ")");
      } else if (mine >= 0 && !report.progress) {
        parts.push_back(who + " fell behind: it reported no step, this rank is at step " + std::to_string(mine));
      } else if (mine >= 0 && *report.progress < mine) {
        parts.push_back(who + " fell behind: it is at step " + std::to_string(*report.progress) +
                        ", this rank at step " + std::to_string(mine));
      } else {
        std::string at = report.progress ? " (last at step " + std::to_string(*report.progress) + ")" : "";
        parts.push_back(who + " did not answer" + at + ": it died or hangs");
      }
    }
    std::string text;
    for (size_t i = 0; i < parts.size(); ++i) text += (i ? "; " : "") + parts[i];
    return text;
  }

  int rank_, world_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  std::string store_gone_;
  CommunicatorOptions options_;
  int64_t progress_ = -1;  // the last step written (-1: none)
  std::atomic<bool> reported_failure_{false};  // a pending reduce may fail on another thread
};

void GlooPending::wait() {
  if (!work_) return;
  auto work = std::move(work_);
  comm_->wait("all_reduce_sum_async", work);
  if (!buffer_.is_same(target_)) target_.copy_(buffer_);
}

std::shared_ptr<::gloo::transport::Device> make_device(int rank, const std::string& interface) {
  try {
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(rank) + ": GLOO_SOCKET_IFNAME: cannot use network interface '" +
                           interface + "': " + first_line(e));
  }
}

// Every rank announces itself in the store and waits for the others until `deadline`, so that a
// rank that never comes is named, and joining as a whole takes at most the timeout (c10d's own
// wait for workers gives up silently and leaves Gloo to wait a second timeout).
void wait_for_ranks(c10d::Store& store, int rank, int world, Clock::time_point deadline,
                    const std::string& store_where, const CommunicatorOptions& options) {
  std::vector<std::string> keys;
  for (int r = 0; r < world; ++r) keys.push_back(joined_key(r));
  std::string cause;
  try {
    store.set(joined_key(rank), to_bytes("1"));
    auto remaining = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    store.wait(keys, std::max(remaining, milliseconds(1)));
    return;
  } catch (const std::exception& e) {
    cause = first_line(e);
  }
  std::string missing;
  try {
    for (int r = 0; r < world; ++r) {
      if (!store.check({keys[r]})) missing += std::string(missing.empty() ? "" : ", ") + std::to_string(r);
    }
  } catch (const std::exception&) {
    missing.clear();
  }
  std::string who = missing.empty() ? "the other ranks" : "rank(s) " + missing;
  throw DistributedError("rank " + std::to_string(rank) + ": joining the job failed: " + who +
                         " did not reach the store at " + store_where + " within the timeout of " +
                         seconds(options.timeout) + " (" + cause + ")");
}

std::unique_ptr<Communicator> connect_group(int rank, int world, c10::intrusive_ptr<c10d::Store> store,
                                            std::vector<std::shared_ptr<::gloo::transport::Device>> devices,
                                            const std::string& store_where, const std::string& store_gone,
                                            Clock::time_point deadline, const CommunicatorOptions& options) {
  wait_for_ranks(*store, rank, world, deadline, store_where, options);
  auto group_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
  group_options->devices = std::move(devices);
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  try {
    group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, group_options);
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(rank) + ": could not connect to the other " +
                           std::to_string(world - 1) + " rank(s) through the store at " + store_where +
                           " within the timeout of " + seconds(options.timeout) + ": " + first_line(e));
  }
  return std::make_unique<GlooCommunicator>(rank, world, std::move(store), std::move(group), store_gone, options);
}

#endif  // INSTSEG_HAVE_GLOO

void check_rank(int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw DistributedError("rank " + std::to_string(rank) + " is not a rank of a job of " + std::to_string(world));
  }
}

[[noreturn]] void no_gloo() {
  throw DistributedError("this instseg was built without Gloo (install libgloo-dev and rebuild)");
}

}  // namespace

std::unique_ptr<Communicator> join(const LaunchEnvironment& env, const CommunicatorOptions& options) {
  check_rank(env.rank, env.world_size);
  if (env.world_size == 1) return single_process();
#if !INSTSEG_HAVE_GLOO
  (void)options;
  no_gloo();
#else
  const auto deadline = Clock::now() + options.timeout;
  std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  // The network devices first: a wrong GLOO_SOCKET_IFNAME fails at once, not after the rendezvous.
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  for (const auto& interface : env.socket_interfaces) devices.push_back(make_device(env.rank, interface));
  if (devices.empty()) {
    // The host name's address, else loopback (what torch.distributed does without GLOO_SOCKET_IFNAME).
    try {
      devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    } catch (const std::exception& e) {
      throw DistributedError("rank " + std::to_string(env.rank) + ": no network device for Gloo (set GLOO_SOCKET_IFNAME): " +
                             first_line(e));
    }
  }
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(env.master_port);
  store_options.timeout = options.timeout;
  // As PyTorch's env:// rendezvous: rank 0 serves the store unless torchrun's agent already does,
  // then every rank is a client under the attempt's prefix (a restarted job must not read the
  // keys of the attempt before it).
  store_options.isServer = !env.agent_store && env.rank == 0;
  store_options.waitWorkers = false;  // wait_for_ranks does it, naming the ranks that did not come
  store_options.multiTenant = true;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const std::exception& e) {
    std::string role = store_options.isServer ? "serving the store on port " + std::to_string(env.master_port) +
                                                    " for " + std::to_string(env.world_size) + " ranks"
                                              : "connecting to the store at " + where;
    throw DistributedError("rank " + std::to_string(env.rank) + ": joining the job failed while " + role +
                           " (MASTER_ADDR:MASTER_PORT = " + where + ", timeout " + seconds(options.timeout) +
                           "): " + first_line(e));
  }
  if (env.agent_store) {
    store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), store);
  }
  std::string gone = env.agent_store
                         ? "the store at " + where + " (torchrun's agent) is unreachable: the agent died or stopped"
                         : "the store at " + where + " (rank 0) is unreachable: rank 0 died or stopped";
  return connect_group(env.rank, env.world_size, std::move(store), std::move(devices),
                       where + " (MASTER_ADDR:MASTER_PORT)", gone, deadline, options);
#endif
}

std::unique_ptr<Communicator> join_through_file(const std::string& path, int rank, int world_size,
                                                const CommunicatorOptions& options) {
  check_rank(rank, world_size);
  if (world_size == 1) return single_process();
#if !INSTSEG_HAVE_GLOO
  (void)path;
  (void)options;
  no_gloo();
#else
  const auto deadline = Clock::now() + options.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::FileStore>(path, world_size);
    store->setTimeout(options.timeout);
  } catch (const std::exception& e) {
    throw DistributedError("rank " + std::to_string(rank) + ": cannot open the file store " + path + ": " +
                           first_line(e));
  }
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices = {
      c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")};
  return connect_group(rank, world_size, std::move(store), std::move(devices), "file " + path,
                       "the file store " + path + " is unreadable", deadline, options);
#endif
}

}  // namespace instseg::dist
