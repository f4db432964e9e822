#include "instseg/data/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <new>

#include "instseg/errors.h"

namespace instseg::data {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Sample i is a 1x2 image whose left pixel holds i and right pixel i + 0.5 (so a flip shows), with
// one box; index `broken` throws like an unreadable image.
class CountingDataset : public Dataset {
 public:
  explicit CountingDataset(int64_t n, int64_t broken = -1) : n_(n), broken_(broken) {}
  int64_t size() const override { return n_; }
  Sample get(int64_t index) const override {
    if (index == broken_) throw InputError("image" + std::to_string(index) + ".jpg: not a decodable image (0 bytes)");
    Sample s;
    s.image = torch::tensor({float(index), float(index) + 0.5f}).view({1, 1, 2}).expand({3, 1, 2}).contiguous();
    s.targets = {torch::tensor({{0.f, 0.f, 1.f, 1.f}}), torch::tensor({int64_t{1}}), torch::tensor({{{uint8_t{1}, uint8_t{0}}}})};
    s.image_id = index + 1;
    return s;
  }
  const CategoryMap& categories() const override { return map_; }

 private:
  int64_t n_, broken_;
  CategoryMap map_{{1}, {"thing"}};
};

std::vector<std::vector<int64_t>> take(DataLoader& loader, int batches) {
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < batches; ++i) out.push_back(loader.next().indices);
  return out;
}

LoaderOptions options_with(int64_t batch_size, int64_t prefetch, uint64_t seed = 3) {
  LoaderOptions options;
  options.batch_size = batch_size;
  options.prefetch_batches = prefetch;
  options.seed = seed;
  return options;
}

TEST(DataLoader, EpochsAreSeededPermutationsAndBatchesStayInsideEpochs) {
  auto dataset = std::make_shared<CountingDataset>(10);
  DataLoader loader(dataset, options_with(3, 0));
  EXPECT_EQ(loader.batches_per_epoch(), 4);
  const auto batches = take(loader, 8);  // two epochs: 3 + 3 + 3 + 1 each
  std::vector<int64_t> epoch0, epoch1;
  for (int b = 0; b < 4; ++b) epoch0.insert(epoch0.end(), batches[b].begin(), batches[b].end());
  for (int b = 4; b < 8; ++b) epoch1.insert(epoch1.end(), batches[b].begin(), batches[b].end());
  EXPECT_EQ(batches[3].size(), 1u);
  EXPECT_EQ(epoch0, loader.epoch_order(0));
  EXPECT_EQ(epoch1, loader.epoch_order(1));
  EXPECT_NE(epoch0, epoch1);
  std::vector<int64_t> sorted = epoch0;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(loader.position(), (LoaderPosition{2, 0}));
  // Another seed, another order; the same seed, the same order.
  EXPECT_NE(DataLoader(dataset, options_with(3, 0, 4)).epoch_order(0), epoch0);
  EXPECT_EQ(DataLoader(dataset, options_with(3, 0, 3)).epoch_order(0), epoch0);
}

TEST(DataLoader, DropLastAndNoShuffle) {
  auto dataset = std::make_shared<CountingDataset>(7);
  LoaderOptions options = options_with(3, 0);
  options.drop_last = true;
  options.shuffle = false;
  DataLoader loader(dataset, options);
  EXPECT_EQ(loader.batches_per_epoch(), 2);
  EXPECT_EQ(take(loader, 3), (std::vector<std::vector<int64_t>>{{0, 1, 2}, {3, 4, 5}, {0, 1, 2}}));
}

TEST(DataLoader, ResumingFromASavedPositionGivesTheSameBatches) {
  auto dataset = std::make_shared<CountingDataset>(11);
  for (int64_t prefetch : {0, 3}) {
    SCOPED_TRACE(prefetch);
    DataLoader first(dataset, options_with(2, prefetch));
    take(first, 4);
    const LoaderPosition saved = first.position();
    EXPECT_EQ(saved, (LoaderPosition{0, 8}));
    std::vector<Batch> expected;
    for (int i = 0; i < 6; ++i) expected.push_back(first.next());  // crosses into epoch 1

    DataLoader resumed(dataset, options_with(2, prefetch == 0 ? 3 : 0), saved);
    for (int i = 0; i < 6; ++i) {
      const Batch batch = resumed.next();
      EXPECT_EQ(batch.indices, expected[i].indices);
      EXPECT_EQ(batch.start, expected[i].start);
      for (size_t k = 0; k < batch.images.size(); ++k) {
        EXPECT_TRUE(torch::equal(batch.images[k], expected[i].images[k]));  // same flips too
        EXPECT_TRUE(torch::equal(batch.targets[k].boxes, expected[i].targets[k].boxes));
      }
    }
    EXPECT_EQ(resumed.position(), first.position());
  }
}

TEST(DataLoader, PositionAtTheEndOfAnEpochStartsTheNext) {
  auto dataset = std::make_shared<CountingDataset>(4);
  DataLoader loader(dataset, options_with(2, 0), {5, 4});
  EXPECT_EQ(loader.position(), (LoaderPosition{6, 0}));
  EXPECT_EQ(loader.next().start, (LoaderPosition{6, 0}));
}

TEST(DataLoader, FlipsFollowTheProbability) {
  auto dataset = std::make_shared<CountingDataset>(200);
  LoaderOptions options = options_with(200, 0);
  options.hflip_prob = 0.5;
  const Batch batch = DataLoader(dataset, options).next();
  int flipped = 0;
  for (size_t k = 0; k < batch.images.size(); ++k) {
    const float left = batch.images[k][0][0][0].item<float>(), right = batch.images[k][0][0][1].item<float>();
    const bool is_flipped = left > right;
    flipped += is_flipped;
    // Box and mask move with the image: the one-pixel box sits over the marked column.
    EXPECT_EQ(batch.targets[k].boxes[0][0].item<float>(), is_flipped ? 1.f : 0.f);
    EXPECT_EQ(batch.targets[k].masks[0][0][1].item<int>(), is_flipped ? 1 : 0);
  }
  EXPECT_GT(flipped, 70);
  EXPECT_LT(flipped, 130);
  options.hflip_prob = 0;
  const Batch unflipped = DataLoader(dataset, options).next();
  for (const auto& image : unflipped.images) EXPECT_LT(image[0][0][0].item<float>(), image[0][0][1].item<float>());
}

TEST(DataLoader, LoadErrorsSurfaceForTheirBatchAndLoadingGoesOn) {
  for (int64_t prefetch : {0, 2}) {
    SCOPED_TRACE(prefetch);
    auto dataset = std::make_shared<CountingDataset>(6, /*broken=*/3);
    LoaderOptions options = options_with(2, prefetch);
    options.shuffle = false;
    DataLoader loader(dataset, options);
    EXPECT_EQ(loader.next().indices, (std::vector<int64_t>{0, 1}));
    try {
      loader.next();
      FAIL() << "expected InputError";
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr("image3.jpg"));
    }
    EXPECT_EQ(loader.position(), (LoaderPosition{0, 4}));
    EXPECT_EQ(loader.next().indices, (std::vector<int64_t>{4, 5}));
  }
}

// Running out of memory on one sample (an annotation rasterised huge) is an InputError naming the
// sample, not a bare "std::bad_alloc".
TEST(DataLoader, OutOfMemoryWhileLoadingNamesTheSample) {
  class HugeSample : public CountingDataset {
   public:
    using CountingDataset::CountingDataset;
    Sample get(int64_t index) const override {
      if (index == 2) throw std::bad_alloc();
      return CountingDataset::get(index);
    }
  };
  LoaderOptions options = options_with(2, /*prefetch=*/0);
  options.shuffle = false;
  DataLoader loader(std::make_shared<HugeSample>(4), options);
  loader.next();
  EXPECT_THAT([&] { loader.next(); },
              ::testing::ThrowsMessage<InputError>(AllOf(HasSubstr("sample #2"), HasSubstr("out of memory"))));
}

TEST(DataLoader, RejectsBadOptionsAndPositions) {
  auto dataset = std::make_shared<CountingDataset>(3);
  try {
    DataLoader(dataset, options_with(0, 0));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("loader.batch_size"));
  }
  LoaderOptions options = options_with(4, 0);
  options.drop_last = true;
  EXPECT_THROW(DataLoader(dataset, options), ConfigError);
  options = options_with(1, 0);
  options.hflip_prob = 1.5;
  EXPECT_THROW(DataLoader(dataset, options), ConfigError);
  EXPECT_THROW(DataLoader(dataset, options_with(1, 0), {0, 4}), ConfigError);
}

// Data-parallel blocks: a global batch of ranks x batch_size x accumulate samples from the epoch
// order (the order of one process), cut into blocks of batch_size; rank r's micro-batch j is
// block r + j x ranks, so one process accumulating ranks x accumulate micro-batches sees the same
// blocks in turn.
TEST(DataLoader, RanksTakeTheirBlocksOfEachGlobalBatchInOneOrder) {
  auto dataset = std::make_shared<CountingDataset>(11);
  auto options_for = [&](int64_t ranks, int64_t rank, int64_t accumulate, int64_t prefetch) {
    LoaderOptions options = options_with(2, prefetch);
    options.ranks = ranks;
    options.rank = rank;
    options.accumulate = accumulate;
    return options;
  };
  DataLoader one(dataset, options_for(1, 0, 4, /*prefetch=*/0));
  DataLoader rank0(dataset, options_for(2, 0, 2, /*prefetch=*/2));
  DataLoader rank1(dataset, options_for(2, 1, 2, /*prefetch=*/0));
  // The order does not depend on the split; 11 samples hold one global batch of 8, the last 3
  // are dropped so that every rank gets full micro-batches.
  EXPECT_EQ(rank0.epoch_order(0), one.epoch_order(0));
  EXPECT_EQ(rank1.epoch_order(1), DataLoader(dataset, options_with(2, 0)).epoch_order(1));
  EXPECT_EQ(rank0.batches_per_epoch(), 1);
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    const std::vector<int64_t> order = one.epoch_order(epoch);
    auto block = [&](int64_t k) { return std::vector<int64_t>(order.begin() + 2 * k, order.begin() + 2 * k + 2); };
    for (int64_t k = 0; k < 4; ++k) {
      const Batch b = one.next();
      EXPECT_EQ(b.indices, block(k));
      EXPECT_EQ(b.block, k);
      EXPECT_EQ(b.start, (LoaderPosition{epoch, 2 * k}));
    }
    for (int64_t j = 0; j < 2; ++j) {
      const Batch b0 = rank0.next(), b1 = rank1.next();
      EXPECT_EQ(b0.indices, block(2 * j)) << "epoch " << epoch << " micro-batch " << j;
      EXPECT_EQ(b1.indices, block(2 * j + 1)) << "epoch " << epoch << " micro-batch " << j;
      EXPECT_EQ(b0.block, 2 * j);
      EXPECT_EQ(b1.block, 2 * j + 1);
      // The position stays at the global batch's start until its last micro-batch is taken.
      EXPECT_EQ(rank1.position(), j == 0 ? (LoaderPosition{epoch, 0}) : (LoaderPosition{epoch + 1, 0}));
    }
    EXPECT_EQ(one.position(), rank0.position());
  }
}

// A position saved by a job of 2 ranks continues in one process accumulating 2 micro-batches.
TEST(DataLoader, PositionsResumeWithAnotherWorldSize) {
  auto dataset = std::make_shared<CountingDataset>(12);
  LoaderOptions two_ranks = options_with(2, 0);
  two_ranks.ranks = 2;
  two_ranks.rank = 1;
  DataLoader job(dataset, two_ranks);
  job.next();
  EXPECT_EQ(job.position(), (LoaderPosition{0, 4}));
  LoaderOptions one_process = options_with(2, 0);
  one_process.accumulate = 2;
  DataLoader resumed(dataset, one_process, job.position());
  const std::vector<int64_t> order = resumed.epoch_order(0);
  EXPECT_EQ(resumed.next().indices, (std::vector<int64_t>{order[4], order[5]}));
  EXPECT_EQ(resumed.next().indices, (std::vector<int64_t>{order[6], order[7]}));
  EXPECT_EQ(resumed.position(), (LoaderPosition{0, 8}));
  EXPECT_EQ(job.next().indices, (std::vector<int64_t>{order[6], order[7]}));
}

TEST(DataLoader, RejectsBadRanksAndGlobalBatchesLargerThanTheData) {
  auto dataset = std::make_shared<CountingDataset>(7);
  LoaderOptions options = options_with(2, 0);
  options.ranks = 2;
  options.rank = 2;
  EXPECT_THAT([&] { DataLoader(dataset, options); }, ::testing::ThrowsMessage<ConfigError>(HasSubstr("loader.rank")));
  options.rank = 1;
  options.accumulate = 0;
  EXPECT_THAT([&] { DataLoader(dataset, options); },
              ::testing::ThrowsMessage<ConfigError>(HasSubstr("loader.accumulate")));
  options.accumulate = 2;  // 2 ranks x 2 x 2 = 8 > 7
  EXPECT_THAT([&] { DataLoader(dataset, options); },
              ::testing::ThrowsMessage<ConfigError>(AllOf(HasSubstr("2 ranks x 2 x accumulate 2 = 8"), HasSubstr("7 samples"))));
}

}  // namespace
}  // namespace instseg::data
