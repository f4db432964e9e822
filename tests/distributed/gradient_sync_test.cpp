// GradientSync: buckets of gradients all-reduced during the backward pass. The reference is the
// same model run serially in one process: the gradients of all micro-batches summed by autograd,
// divided by their count. Ranks are threads of this process meeting through a FileStore
// (dist::join_through_file); the launch-order tests use a communicator test double.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "instseg/distributed/communicator.h"
#include "instseg/distributed/gradient_sync.h"
#include "instseg/errors.h"

namespace instseg::dist {
namespace {

using Grads = std::map<std::string, torch::Tensor>;  // name -> .grad (undefined: none)

// A module of one parameter.
struct HolderImpl : torch::nn::Module {
  HolderImpl() { value = register_parameter("value", torch::randn({5})); }
  torch::Tensor value;
};
TORCH_MODULE(Holder);

// Two convolutions and a linear layer; `unused` takes no part in the forward pass and sits between
// the layers in parameter order (a child module: a module lists its own parameters before its
// children's), so its bucket cannot complete during backward and the buckets after it wait for
// finish(); `frozen` is used but never trained.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)));
    unused = register_module("unused", Holder());
    frozen = register_parameter("frozen", torch::rand({4}) + 0.5, /*requires_grad=*/false);
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 6, 3).stride(2)));
    fc = register_module("fc", torch::nn::Linear(6, 3));
  }
  // x: [N, 2, 8, 8] -> [N, 3]
  torch::Tensor forward(const torch::Tensor& x) {
    first_output = conv1(x);
    auto y = torch::relu(first_output) * frozen.view({1, 4, 1, 1});
    y = torch::relu(conv2(y)).mean({2, 3});
    return fc(y);
  }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc{nullptr};
  Holder unused{nullptr};
  torch::Tensor frozen;
  torch::Tensor first_output;  // of the last forward, for tests that hook the backward pass
};
TORCH_MODULE(Net);

// Every copy starts from the same weights (called from one thread: the global generator).
Net make_net() {
  torch::manual_seed(11);
  return Net();
}

struct MicroBatch {
  torch::Tensor images, targets;
};

std::vector<MicroBatch> make_micro_batches(int count) {
  torch::manual_seed(5);
  std::vector<MicroBatch> batches;
  for (int k = 0; k < count; ++k) batches.push_back({torch::randn({2, 2, 8, 8}), torch::randn({2, 3})});
  return batches;
}

torch::Tensor loss_of(Net& net, const MicroBatch& batch) {
  return (net->forward(batch.images) - batch.targets).pow(2).mean();
}

Grads grads_of(torch::nn::Module& module) {
  Grads grads;
  for (const auto& item : module.named_parameters()) {
    grads[item.key()] = item.value().grad().defined() ? item.value().grad().clone() : torch::Tensor();
  }
  return grads;
}

// The serial reference: one process, every micro-batch's backward accumulated, divided by `divisor`.
Grads serial_reference(const std::vector<MicroBatch>& batches, double divisor) {
  Net net = make_net();
  for (const auto& batch : batches) loss_of(net, batch).backward();
  Grads grads = grads_of(*net);
  for (auto& item : grads) {
    if (item.second.defined()) item.second.div_(divisor);
  }
  return grads;
}

void expect_close(const torch::Tensor& actual, const torch::Tensor& expected, const std::string& what,
                  double relative = 1e-6) {
  ASSERT_TRUE(actual.defined()) << what << ": gradient undefined";
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  ASSERT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  const double err = (actual.to(torch::kDouble) - expected.to(torch::kDouble)).abs().max().item<double>();
  const double scale = expected.to(torch::kDouble).abs().max().item<double>();
  EXPECT_LE(err, relative * scale) << what << ": max abs difference " << err << " (largest value " << scale << ")";
}

// Every trained parameter's gradient equals the reference's; "unused" has none; "frozen" neither.
void expect_reference_grads(const Grads& actual, const Grads& expected, const std::string& who) {
  for (const auto& item : expected) {
    if (item.first == "unused.value" || item.first == "frozen") continue;
    expect_close(actual.at(item.first), item.second, who + " " + item.first);
  }
  EXPECT_FALSE(actual.at("unused.value").defined()) << who << ": the unused parameter got a gradient";
  EXPECT_FALSE(actual.at("frozen").defined()) << who << ": the frozen parameter got a gradient";
}

// Runs fn(comm) on `world` threads, each a rank joined through one fresh FileStore file; rethrows
// the first rank's failure.
template <typename Fn>
void run_ranks(int world, Fn fn) {
  static std::atomic<int> counter{0};
  const auto path = (std::filesystem::temp_directory_path() /
                     ("instseg_gradient_sync_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
                        .string();
  std::filesystem::remove(path);
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        auto comm = join_through_file(path, rank, world);
        fn(*comm);
      } catch (...) {
        errors[rank] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::filesystem::remove(path);
  for (auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

// Passes every collective to `inner` and records the async all-reduces: how many, and each
// buffer's size, in launch order.
class RecordingCommunicator : public Communicator {
 public:
  explicit RecordingCommunicator(Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  void all_reduce_sum(std::vector<at::Tensor>& tensors) override { inner_.all_reduce_sum(tensors); }
  std::unique_ptr<PendingReduce> all_reduce_sum_async(at::Tensor tensor) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_.push_back(tensor.numel());
    }
    ++launches;
    return inner_.all_reduce_sum_async(tensor);
  }
  void broadcast(std::vector<at::Tensor>& tensors, int root) override { inner_.broadcast(tensors, root); }
  std::vector<std::string> all_gather_bytes(const std::string& bytes) override { return inner_.all_gather_bytes(bytes); }
  void barrier() override { inner_.barrier(); }
  void mark_progress(int64_t step) override { inner_.mark_progress(step); }

  std::vector<int64_t> sizes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return sizes_;
  }
  std::atomic<int> launches{0};

 private:
  Communicator& inner_;
  std::mutex mutex_;
  std::vector<int64_t> sizes_;
};

// 2 ranks x 2 micro-batches (rank r takes micro-batches r and r + 2, armed on the second) give
// the serial average over the 4, with one bucket and with one bucket per parameter.
TEST(GradientSync, TwoRanksTwoMicroBatchesEqualSerialAverage) {
  const auto batches = make_micro_batches(4);
  const Grads expected = serial_reference(batches, 4);
  for (int64_t bucket_bytes : {int64_t{25} << 20, int64_t{1}}) {
    SCOPED_TRACE("bucket_bytes " + std::to_string(bucket_bytes));
    std::vector<Net> nets = {make_net(), make_net()};
    std::vector<Grads> results(2);
    std::vector<int64_t> bucket_counts(2);
    std::vector<torch::Tensor> frozen_before = {nets[0]->frozen.clone(), nets[1]->frozen.clone()};
    run_ranks(2, [&](Communicator& comm) {
      const int rank = comm.rank();
      Net& net = nets[rank];
      GradientSync sync(comm, net->parameters(), GradientSyncOptions{bucket_bytes});
      bucket_counts[rank] = sync.bucket_count();
      loss_of(net, batches[rank]).backward();  // not armed: local accumulation only
      sync.arm();
      loss_of(net, batches[rank + 2]).backward();
      sync.finish(4);
      results[rank] = grads_of(*net);
    });
    for (int rank = 0; rank < 2; ++rank) {
      expect_reference_grads(results[rank], expected, "rank " + std::to_string(rank));
      EXPECT_TRUE(torch::equal(nets[rank]->frozen, frozen_before[rank])) << "rank " << rank << ": frozen changed";
    }
    // 7 trainable tensors (the frozen one takes no part): one bucket each under a 1-byte cap.
    EXPECT_EQ(bucket_counts[0], bucket_bytes == 1 ? 7 : 1);
  }
}

// A parameter only rank 0 uses, and only in the first (unarmed) micro-batch of its window: the
// armed pass never reaches it, so rank 0 sends the gradient accumulated in .grad and rank 1 zeros;
// both ranks end with rank 0's gradient / 4, rank 1's .grad defined now.
TEST(GradientSync, ParameterUsedOnOneRankOnlyIsAveragedWithZeros) {
  const auto batches = make_micro_batches(4);
  std::vector<Net> nets = {make_net(), make_net()};
  std::vector<Grads> results(2);
  run_ranks(2, [&](Communicator& comm) {
    const int rank = comm.rank();
    Net& net = nets[rank];
    GradientSync sync(comm, net->parameters(), GradientSyncOptions{1});
    auto first = loss_of(net, batches[rank]);
    if (rank == 0) first = first + net->unused->value.pow(2).sum();
    first.backward();
    sync.arm();
    loss_of(net, batches[rank + 2]).backward();
    sync.finish(4);
    results[rank] = grads_of(*net);
  });
  const Grads expected = serial_reference(batches, 4);
  const auto unused_rank0 = 2 * make_net()->unused->value.detach();  // d/dp sum(p^2) on rank 0 only
  for (int rank = 0; rank < 2; ++rank) {
    const std::string who = "rank " + std::to_string(rank);
    expect_close(results[rank].at("unused.value"), unused_rank0 / 4, who + " unused.value");
    expect_close(results[rank].at("fc.weight"), expected.at("fc.weight"), who + " fc.weight");
    expect_close(results[rank].at("conv1.weight"), expected.at("conv1.weight"), who + " conv1.weight");
    EXPECT_FALSE(results[rank].at("frozen").defined()) << who;
  }
}

// With small buckets, the all-reduces of the late layers' buckets start before the backward pass
// reaches the first layer (counted from a hook on conv1's output gradient); an unarmed pass starts
// none; the gradients equal the unbucketed result.
TEST(GradientSync, BucketsStartDuringTheBackwardPass) {
  const auto batches = make_micro_batches(2);
  auto one_process = single_process();
  RecordingCommunicator comm(*one_process);
  Net net = make_net();
  GradientSync sync(comm, net->parameters(), GradientSyncOptions{1});
  EXPECT_EQ(sync.bucket_count(), 7);  // one per trainable parameter under a 1-byte cap

  loss_of(net, batches[0]).backward();
  EXPECT_EQ(comm.launches.load(), 0) << "an unarmed pass must not communicate";

  sync.arm();
  auto loss = loss_of(net, batches[1]);
  int launched_before_first_layer = -1;
  net->first_output.register_hook([&](const torch::Tensor&) { launched_before_first_layer = comm.launches.load(); });
  loss.backward();
  const int launched_in_backward = comm.launches.load();
  sync.finish(2);

  // Bucket order: fc.bias, fc.weight, conv2.bias, conv2.weight, unused.value, conv1.bias, conv1.weight.
  // The four of fc and conv2 are complete once the gradient reaches conv1's output; "unused" never
  // completes in the pass, so it and the conv1 buckets start in finish().
  EXPECT_EQ(launched_before_first_layer, 4);
  EXPECT_EQ(launched_in_backward, 4);
  EXPECT_EQ(comm.launches.load(), 7);
  expect_reference_grads(grads_of(*net), serial_reference(batches, 2), "bucketed");
}

// Two ranks whose backward passes produce the gradients in opposite orders (the forward computes
// two independent branches in opposite orders) still start the buckets in the one bucket order.
TEST(GradientSync, BucketsStartInTheSameOrderWhateverTheHookOrder) {
  struct Branches : torch::nn::Module {
    Branches() {
      a = register_module("a", torch::nn::Linear(3, 2));  // weight 6, bias 2
      b = register_module("b", torch::nn::Linear(3, 5));  // weight 15, bias 5
    }
    torch::nn::Linear a{nullptr}, b{nullptr};
  };
  torch::manual_seed(3);
  const auto x = torch::randn({4, 3});
  std::vector<std::vector<std::string>> hook_orders(2);
  std::vector<std::vector<int64_t>> launch_orders(2);
  for (int rank = 0; rank < 2; ++rank) {
    torch::manual_seed(1);
    Branches model;
    auto one_process = single_process();
    RecordingCommunicator comm(*one_process);
    GradientSync sync(comm, model.parameters(), GradientSyncOptions{4});
    for (const auto& item : model.named_parameters()) {
      const std::string name = item.key();
      item.value().register_hook([&hook_orders, rank, name](const torch::Tensor&) { hook_orders[rank].push_back(name); });
    }
    sync.arm();
    torch::Tensor loss;
    if (rank == 0) {
      auto first = model.a(x).pow(2).sum();
      loss = first + model.b(x).pow(2).sum();
    } else {
      auto first = model.b(x).pow(2).sum();
      loss = model.a(x).pow(2).sum() + first;
    }
    loss.backward();
    sync.finish(1);
    launch_orders[rank] = comm.sizes();
  }
  ASSERT_EQ(hook_orders[0].size(), 4u);
  ASSERT_NE(hook_orders[0], hook_orders[1]) << "the test needs the two ranks' hooks to fire in different orders";
  // Reverse registration order, one parameter (plus its has-grad flag) per bucket.
  const std::vector<int64_t> bucket_order = {5 + 1, 15 + 1, 2 + 1, 6 + 1};
  EXPECT_EQ(launch_orders[0], bucket_order);
  EXPECT_EQ(launch_orders[1], bucket_order);
}

// One process: divisor 2 over two micro-batches (the first not armed) gives (g1 + g2) / 2, with
// g1 and g2 each from a fresh copy of the model.
TEST(GradientSync, OneProcessAveragesAccumulatedMicroBatches) {
  const auto batches = make_micro_batches(2);
  const Grads g1 = serial_reference({batches[0]}, 1);
  const Grads g2 = serial_reference({batches[1]}, 1);
  auto comm = single_process();
  Net net = make_net();
  GradientSync sync(*comm, net->parameters());
  loss_of(net, batches[0]).backward();
  sync.arm();
  loss_of(net, batches[1]).backward();
  sync.finish(2);
  const Grads actual = grads_of(*net);
  Grads expected;
  for (const auto& item : g1) {
    expected[item.first] = item.second.defined() ? (item.second + g2.at(item.first)) / 2 : torch::Tensor();
  }
  expect_reference_grads(actual, expected, "one process");
  EXPECT_GE(sync.last_wait_seconds(), 0.0);
}

// Parameters of several dtypes: float64 gets its own bucket, bfloat16 is summed in float32 beside
// float32; each .grad keeps its parameter's dtype.
TEST(GradientSync, KeepsEachParametersDtype) {
  torch::manual_seed(2);
  auto p64 = torch::randn({3}, torch::kFloat64).requires_grad_();
  auto p32 = torch::randn({4}).requires_grad_();
  auto p16 = torch::randn({5}).to(torch::kBFloat16).requires_grad_();
  auto comm = single_process();
  GradientSync sync(*comm, {p64, p32, p16});
  EXPECT_EQ(sync.bucket_count(), 2);
  sync.arm();
  (p64.pow(2).sum() + p32.pow(3).sum() + p16.to(torch::kFloat).pow(2).sum()).backward();
  sync.finish(4);
  expect_close(p64.grad(), 2 * p64.detach() / 4, "float64", 1e-15);
  expect_close(p32.grad(), 3 * p32.detach().pow(2) / 4, "float32");
  expect_close(p16.grad(), (2 * p16.detach().to(torch::kFloat) / 4).to(torch::kBFloat16), "bfloat16", 1e-2);
}

// A backward pass that throws after some buckets started leaves state behind; the next arm()
// forgets it, and the next pass gives the plain gradients.
TEST(GradientSync, ArmAfterAFailedPassStartsClean) {
  const auto batches = make_micro_batches(1);
  auto one_process = single_process();
  RecordingCommunicator comm(*one_process);
  Net net = make_net();
  GradientSync sync(comm, net->parameters(), GradientSyncOptions{1});
  sync.arm();
  auto loss = loss_of(net, batches[0]);
  net->first_output.register_hook([](const torch::Tensor&) { throw std::runtime_error("injected failure"); });
  EXPECT_THROW(loss.backward(), std::exception);
  ASSERT_EQ(comm.launches.load(), 4) << "the failed pass should have started the fc and conv2 buckets";

  for (auto& parameter : net->parameters()) parameter.mutable_grad() = torch::Tensor();
  sync.arm();
  loss_of(net, batches[0]).backward();
  sync.finish(1);
  expect_reference_grads(grads_of(*net), serial_reference(batches, 1), "after the failure");
}

// Destroying a GradientSync (here in the middle of an armed pass) removes its hooks: later passes
// are plain autograd, and nothing reaches the communicator.
TEST(GradientSync, DestructionRemovesTheHooks) {
  const auto batches = make_micro_batches(1);
  auto one_process = single_process();
  RecordingCommunicator comm(*one_process);
  Net net = make_net();
  {
    GradientSync sync(comm, net->parameters(), GradientSyncOptions{1});
    sync.arm();
  }
  loss_of(net, batches[0]).backward();
  EXPECT_EQ(comm.launches.load(), 0);
  expect_reference_grads(grads_of(*net), serial_reference(batches, 1), "after destruction");
}

TEST(GradientSync, RejectsANonPositiveBucketSize) {
  auto comm = single_process();
  auto p = torch::zeros({2}, torch::requires_grad());
  EXPECT_THROW({ GradientSync sync(*comm, {p}, GradientSyncOptions{0}); }, ConfigError);
}

}  // namespace
}  // namespace instseg::dist
