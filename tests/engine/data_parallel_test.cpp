// Data-parallel training (engine/trainer.h with TrainRunOptions::communicator): ranks run as
// threads of this process, meeting through a file (dist::join_through_file). The specification is
// one process accumulating the ranks' micro-batches: 2 ranks x batch B must end with its weights
// and log its losses; rank 0 alone writes the run folder; a paused job resumes in one process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "instseg/checkpoint/state_dict.h"
#include "instseg/distributed/communicator.h"
#include "instseg/engine/model_factory.h"
#include "instseg/engine/trainer.h"
#include "instseg/engine/training_data.h"
#include "instseg/errors.h"
#include "tiny_training.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TestDir;

// tiny_training.h's run at 64 px, one thread per rank (two ranks share this machine's cores),
// 4 iterations of batch 2 (lean: ResNet-18 at 64 px takes a fraction of a second per micro-batch).
TrainConfig small_config(NormKind norm) {
  TrainConfig c = testing::tiny_train_config();
  c.data.synthetic_image_size = 64;
  c.data.synthetic_train_images = 16;
  c.data.synthetic_val_images = 0;
  c.model.options.transform.min_size = {64};
  c.model.options.transform.max_size = 64;
  c.model.options.backbone.norm = norm;
  c.optim.iterations = 4;
  c.optim.warmup_iterations = 1;
  // No clipping: it would rescale a wrongly scaled gradient back to the same norm and hide it.
  c.optim.clip_grad_norm = 0.0;
  c.run.threads = 1;
  c.run.log_every = 1;
  return c;
}

// Random initial weights in a checkpoint for model.weights: ranks that are threads draw their
// initialisation from torch's one global generator in a racy order, so runs compare only from
// weights given to them.
std::string write_initial_weights(const TrainConfig& config, const std::string& path, uint64_t seed) {
  const TrainingData data(config.data);
  torch::manual_seed(seed);
  ModelConfig fresh = config.model;
  fresh.weights.clear();  // a random start, not a copy of the one the config may already name
  MaskRcnn model = build_mask_rcnn_for_training(fresh, data.num_classes());
  save_state_dict(path, module_state_dict(*model));
  return path;
}

// Runs body(rank, communicator) for each rank on its own thread; each rank's exception (or null).
std::vector<std::exception_ptr> run_ranks(const std::string& store_file, int world,
                                          const std::function<void(int, dist::Communicator&)>& body) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        dist::CommunicatorOptions options;
        options.timeout = std::chrono::seconds(120);  // a wrong rank fails the test instead of hanging it
        auto comm = dist::join_through_file(store_file, rank, world, options);
        body(rank, *comm);
      } catch (...) {
        errors[static_cast<size_t>(rank)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

std::string message_of(const std::exception_ptr& error) {
  if (!error) return "";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "unknown exception";
}

void expect_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (size_t r = 0; r < errors.size(); ++r) EXPECT_EQ(message_of(errors[r]), "") << "rank " << r;
}

// The largest over tensors of max|a - b| / max|b|; with `origin`, of the updates a - origin and
// b - origin (tensors that did not move are skipped): training moves weights by a small fraction,
// so the weights' own relative difference hides a wrong update that the updates' shows.
double max_relative_difference(const std::string& a_path, const std::string& b_path, const std::string& origin = "") {
  const StateDict a = read_state_dict(a_path), b = read_state_dict(b_path);
  const StateDict o = origin.empty() ? StateDict{} : read_state_dict(origin);
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    torch::Tensor x = a[i].second.to(torch::kDouble), y = b[i].second.to(torch::kDouble);
    if (!origin.empty()) {
      const torch::Tensor start = o.at(i).second.to(torch::kDouble);
      x = x - start, y = y - start;
    }
    const double scale = y.abs().max().item<double>();
    if (scale == 0.0 && !origin.empty()) continue;
    worst = std::max(worst, (x - y).abs().max().item<double>() / std::max(scale, 1e-12));
  }
  return worst;
}

// (iteration, loss) of the train records.
std::vector<std::pair<int, double>> logged_losses(const std::string& log) {
  std::ifstream in(log);
  std::vector<std::pair<int, double>> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line);
    if (record["type"] == "train") out.emplace_back(record["iteration"].get<int>(), record["loss"].get<double>());
  }
  return out;
}

TrainOutcome train_one_process(const TrainConfig& config, const std::string& out, ExistingRun existing = ExistingRun::kRefuse) {
  TrainRunOptions options;
  options.existing_run = existing;
  return train(config, out, options);
}

// 2 ranks x batch 2 == one process, batch 2, accumulate 2: same weights (relative 1e-4), same
// logged losses. Rank 1 is even given other initial weights: the start's broadcast replaces them
// with rank 0's. Rank 1 writes nothing (its --out stays absent); rank 0's folder is a whole run.
class TwoRanksEqualOneProcess : public ::testing::TestWithParam<NormKind> {};

TEST_P(TwoRanksEqualOneProcess, AccumulatingTheirMicroBatches) {
  TestDir dir;
  TrainConfig config = small_config(GetParam());
  const bool with_validation = GetParam() == NormKind::kFrozenBatchNorm;  // once is enough
  if (with_validation) config.data.synthetic_val_images = 3;  // uneven shares of 2 ranks
  config.model.weights = write_initial_weights(config, dir / "init.pth", 11);
  const std::string other_weights = write_initial_weights(config, dir / "other.pth", 12);

  TrainConfig one = config;
  one.optim.accumulate = 2;
  train_one_process(one, dir / "one");

  const auto errors = run_ranks(dir / "store", 2, [&](int rank, dist::Communicator& comm) {
    TrainConfig c = config;
    if (rank == 1) c.model.weights = other_weights;
    TrainRunOptions options;
    options.communicator = &comm;
    train(c, rank == 0 ? dir / "job" : dir / "rank1", options);
  });
  expect_no_errors(errors);

  const double difference = max_relative_difference(dir / "job/model_last.pth", dir / "one/model_last.pth");
  const double update_difference =
      max_relative_difference(dir / "job/model_last.pth", dir / "one/model_last.pth", config.model.weights);
  std::cout << "max relative difference, 2 ranks vs 1 process accumulating 2: weights " << difference << ", updates "
            << update_difference << "\n";
  EXPECT_LE(difference, 1e-4);
  EXPECT_LE(update_difference, 1e-3);
  // Rank 1's own start was far from rank 0's, and training moved the weights.
  EXPECT_GT(max_relative_difference(other_weights, config.model.weights), 0.5);
  EXPECT_GT(max_relative_difference(dir / "job/model_last.pth", config.model.weights), 1e-3);
  const auto job_losses = logged_losses(dir / "job/log.jsonl"), one_losses = logged_losses(dir / "one/log.jsonl");
  ASSERT_EQ(job_losses.size(), 4u);
  ASSERT_EQ(one_losses.size(), job_losses.size());
  for (size_t i = 0; i < job_losses.size(); ++i) {
    EXPECT_EQ(job_losses[i].first, one_losses[i].first);
    EXPECT_NEAR(job_losses[i].second, one_losses[i].second, 1e-5 * std::abs(one_losses[i].second)) << "record " << i;
  }
  EXPECT_FALSE(fs::exists(dir / "rank1")) << "rank 1 wrote its run folder";
  std::vector<std::string> expected = {"config.json", "categories.json", "log.jsonl", "model_last.pth", "train_state.pth"};
  if (with_validation) {
    for (const char* name : {"val_annotations.json", "val_predictions.json", "metrics.json", "model_best.pth"}) {
      expected.push_back(name);
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& name : run_file_names()) {
    if (std::find(expected.begin(), expected.end(), name) == expected.end()) unexpected.push_back(name);
  }
  EXPECT_EQ(existing_files(dir / "job", expected), expected);
  EXPECT_EQ(existing_files(dir / "job", unexpected), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Norms, TwoRanksEqualOneProcess,
                         ::testing::Values(NormKind::kGroupNorm, NormKind::kFrozenBatchNorm),
                         [](const auto& info) { return to_string(info.param); });

// optim.accumulate does something: one process accumulating 2 micro-batches ends elsewhere than
// one stepping on each.
TEST(DataParallel, AccumulateChangesTheTraining) {
  TestDir dir;
  TrainConfig config = small_config(NormKind::kGroupNorm);
  config.optim.iterations = 2;
  config.model.weights = write_initial_weights(config, dir / "init.pth", 11);
  train_one_process(config, dir / "plain");
  config.optim.accumulate = 2;
  train_one_process(config, dir / "accumulated");
  EXPECT_GT(max_relative_difference(dir / "plain/model_last.pth", dir / "accumulated/model_last.pth", config.model.weights),
            0.1);
}

// A job of 2 ranks paused (run.stop_after) resumes in one process accumulating 2, and a run paused
// in one process resumes on 2 ranks; both end with the weights of a one-process run that never
// stopped: the data position, optimizer state and schedule continue across world sizes.
TEST(DataParallel, AJobPausedOnTwoRanksResumesInOneProcess) {
  TestDir dir;
  TrainConfig config = small_config(NormKind::kGroupNorm);
  config.optim.iterations = 6;  // 16 images: epoch 0 has two global batches of 8, so the pause crosses an epoch
  config.model.weights = write_initial_weights(config, dir / "init.pth", 21);
  TrainConfig one = config;
  one.optim.accumulate = 2;
  train_one_process(one, dir / "uninterrupted");

  TrainConfig paused = config;
  paused.run.stop_after = 3;
  const auto errors = run_ranks(dir / "store", 2, [&](int rank, dist::Communicator& comm) {
    TrainRunOptions options;
    options.communicator = &comm;
    train(paused, rank == 0 ? dir / "job" : dir / "rank1", options);
  });
  expect_no_errors(errors);
  const TrainOutcome resumed = train_one_process(one, dir / "job", ExistingRun::kResume);
  EXPECT_EQ(resumed.iterations_done, 6);
  const double difference = max_relative_difference(dir / "job/model_last.pth", dir / "uninterrupted/model_last.pth");
  const double update_difference = max_relative_difference(dir / "job/model_last.pth", dir / "uninterrupted/model_last.pth",
                                                           config.model.weights);
  std::cout << "max relative difference, paused on 2 ranks + resumed in 1 vs uninterrupted: weights " << difference
            << ", updates " << update_difference << "\n";
  EXPECT_LE(difference, 1e-4);
  EXPECT_LE(update_difference, 1e-3);

  // And the other way: paused in one process, resumed on 2 ranks. Rank 1 reads nothing from the
  // folder: the optimizer state, iteration and data position reach it by broadcast.
  TrainConfig one_paused = one;
  one_paused.run.stop_after = 3;
  train_one_process(one_paused, dir / "single");
  const auto resumed_errors = run_ranks(dir / "store2", 2, [&](int rank, dist::Communicator& comm) {
    TrainRunOptions options;
    options.communicator = &comm;
    options.existing_run = ExistingRun::kResume;
    train(config, rank == 0 ? dir / "single" : dir / "rank1", options);
  });
  expect_no_errors(resumed_errors);
  EXPECT_FALSE(fs::exists(dir / "rank1"));
  const double back = max_relative_difference(dir / "single/model_last.pth", dir / "uninterrupted/model_last.pth",
                                              config.model.weights);
  std::cout << "max relative update difference, paused in 1 process + resumed on 2 ranks vs uninterrupted: " << back << "\n";
  EXPECT_LE(back, 1e-3);
}

// A failure only rank 0 sees (its run folder already holds a run) fails rank 1 too, with rank 0's
// message, instead of leaving it waiting for a collective.
TEST(DataParallel, RankZerosRefusalReachesTheOtherRanks) {
  TestDir dir;
  TrainConfig config = small_config(NormKind::kGroupNorm);
  dir.write("job/config.json", "{}");
  const auto errors = run_ranks(dir / "store", 2, [&](int rank, dist::Communicator& comm) {
    TrainRunOptions options;
    options.communicator = &comm;
    train(config, rank == 0 ? dir / "job" : dir / "rank1", options);
  });
  EXPECT_THAT(message_of(errors[0]), HasSubstr("already holds a training run"));
  EXPECT_THAT(message_of(errors[1]), AllOf(HasSubstr("rank 0: "), HasSubstr("already holds a training run")));
  EXPECT_THROW(std::rethrow_exception(errors[1]), ConfigError);
  EXPECT_FALSE(fs::exists(dir / "rank1"));
}

// A non-finite loss on one rank stops every rank at that iteration with a TrainingError (the
// flag is all-reduced), not with one rank gone and the other failing on a collective: rank 1
// (alone) normalises its inputs by 1e-30, so its losses overflow; it names its images, rank 0
// names rank 1. Nothing was checkpointed yet: rank 0's fresh folder is removed.
TEST(DataParallel, ANonFiniteLossOnOneRankStopsEveryRankAtThatIteration) {
  TestDir dir;
  TrainConfig config = small_config(NormKind::kGroupNorm);
  config.model.weights = write_initial_weights(config, dir / "init.pth", 31);
  std::vector<std::string> messages(2);
  const auto errors = run_ranks(dir / "store", 2, [&](int rank, dist::Communicator& comm) {
    TrainConfig c = config;
    if (rank == 1) c.model.options.transform.image_std = {1e-30, 1e-30, 1e-30};
    TrainRunOptions options;
    options.communicator = &comm;
    try {
      train(c, rank == 0 ? dir / "job" : dir / "rank1", options);
    } catch (const TrainingError& e) {
      messages[static_cast<size_t>(rank)] = e.what();
    }
  });
  expect_no_errors(errors);
  EXPECT_THAT(messages[1], AllOf(HasSubstr("non-finite loss"), HasSubstr("at iteration 1 on images: ")));
  EXPECT_THAT(messages[0], AllOf(HasSubstr("non-finite loss at iteration 1"), HasSubstr("rank 1's images")));
  EXPECT_FALSE(fs::exists(dir / "job"));
  EXPECT_FALSE(fs::exists(dir / "rank1"));
}

// The time limit is rank 0's decision, broadcast: rank 1, whose own limit would let it go on, stops
// with rank 0 (whose limit of 3 ms is over before the first step) instead of waiting alone. Both
// take the one step an invocation always takes, and no more.
TEST(DataParallel, RankZerosTimeLimitStopsEveryRank) {
  TestDir dir;
  TrainConfig config = small_config(NormKind::kGroupNorm);
  std::vector<TrainOutcome> outcomes(2);
  const auto errors = run_ranks(dir / "store", 2, [&](int rank, dist::Communicator& comm) {
    TrainConfig c = config;
    c.run.time_limit_minutes = rank == 0 ? 5e-5 : 60.0;
    TrainRunOptions options;
    options.communicator = &comm;
    outcomes[static_cast<size_t>(rank)] = train(c, rank == 0 ? dir / "job" : dir / "rank1", options);
  });
  expect_no_errors(errors);
  for (const auto& outcome : outcomes) {
    EXPECT_TRUE(outcome.stopped_by_time_limit);
    EXPECT_EQ(outcome.iterations_done, 1);
  }
}

// Rank 0 of a stand-in job of two ranks, for checks that come before the ranks exchange anything.
class TwoRanksNoCollectives : public dist::Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void all_reduce_sum(std::vector<at::Tensor>&) override { unexpected(); }
  std::unique_ptr<dist::PendingReduce> all_reduce_sum_async(at::Tensor) override { unexpected(); }
  void broadcast(std::vector<at::Tensor>&, int) override { unexpected(); }
  // Rank 1 reports success when the ranks agree on their preparation.
  std::vector<std::string> all_gather_bytes(const std::string& bytes) override { return {bytes, ""}; }
  void barrier() override { unexpected(); }
  void mark_progress(int64_t) override {}

 private:
  [[noreturn]] static void unexpected() { throw std::logic_error("a collective was called"); }
};

// LibTorch 1.13's CPU build has no SyncBatchNorm: batch norm that trains is refused in a job,
// naming the key and what to use instead, before anything is written.
TEST(DataParallel, TrainableBatchNormInAJobIsAConfigError) {
  TestDir dir;
  TwoRanksNoCollectives comm;
  TrainRunOptions options;
  options.communicator = &comm;
  TrainConfig config = small_config(NormKind::kGroupNorm);
  config.model.options.roi_heads.head_norm = NormKind::kBatchNorm;
  EXPECT_THAT([&] { train(config, dir / "run", options); },
              ::testing::ThrowsMessage<ConfigError>(
                  AllOf(HasSubstr("model.roi_heads.head_norm"), HasSubstr("group_norm"), HasSubstr("frozen_batch_norm"))));
  config = small_config(NormKind::kBatchNorm);
  EXPECT_THAT([&] { train(config, dir / "run", options); },
              ::testing::ThrowsMessage<ConfigError>(HasSubstr("model.backbone.norm")));
  EXPECT_FALSE(fs::exists(dir / "run"));
}

TEST(DataParallel, GlobalBatchLargerThanTheDataIsAConfigErrorNamingItsFactors) {
  TestDir dir;
  TrainConfig config = small_config(NormKind::kGroupNorm);
  config.data.synthetic_train_images = 7;
  config.optim.accumulate = 2;  // 2 x 2 x 2 ranks = 8 > 7
  TwoRanksNoCollectives comm;   // the check comes before the first collective on rank 0
  TrainRunOptions options;
  options.communicator = &comm;
  EXPECT_THAT([&] { train(config, dir / "run", options); },
              ::testing::ThrowsMessage<ConfigError>(AllOf(HasSubstr("optim.batch_size 2"), HasSubstr("optim.accumulate 2"),
                                                          HasSubstr("2 ranks"), HasSubstr("7 images"))));
}

}  // namespace
}  // namespace instseg
