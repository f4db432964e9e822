#include "instseg/data/folder_dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "support/input_error.h"
#include "support/test_dir.h"
#include "instseg/data/image_io.h"
#include "instseg/errors.h"

namespace instseg::data {
namespace {

using ::instseg::testing::input_error_of;
using ::instseg::testing::TestDir;
using ::testing::HasSubstr;

// A 6x8 id mask with instance ids `a` (top-left block) and `b` (one pixel at row 5, column 7).
torch::Tensor two_instances(int64_t a, int64_t b) {
  auto ids = torch::zeros({6, 8}, torch::kInt64);
  ids.slice(0, 1, 3).slice(1, 2, 5).fill_(a);
  ids[5][7] = b;
  return ids;
}

void add_pair(const TestDir& dir, const std::string& folder, const std::string& stem, const torch::Tensor& ids) {
  std::filesystem::create_directories(dir.file(folder + "/images"));
  std::filesystem::create_directories(dir.file(folder + "/masks"));
  write_image_png(dir.file(folder + "/images/" + stem + ".png"), torch::rand({3, ids.size(0), ids.size(1)}));
  write_label_png(dir.file(folder + "/masks/" + stem + ".png"), ids);
}

TEST(FolderDataset, OneClassLayoutWithSixteenBitIds) {
  TestDir dir;
  add_pair(dir, ".", "b", two_instances(1000, 7));  // 16-bit PNG
  add_pair(dir, ".", "a", torch::zeros({6, 8}, torch::kInt64));  // a negative
  const FolderDataset dataset(dir.file(""), "cell");
  ASSERT_EQ(dataset.size(), 2);
  EXPECT_EQ(dataset.categories().class_names(), (std::vector<std::string>{"__background__", "cell"}));
  const Sample negative = dataset.get(0);  // sorted by name: a.png first
  EXPECT_THAT(negative.file, HasSubstr("a.png"));
  EXPECT_EQ(negative.targets.masks.sizes(), (std::vector<int64_t>{0, 6, 8}));
  const Sample s = dataset.get(1);
  EXPECT_EQ(s.image_id, 2);
  // Instances in ascending id order: 7 (the pixel), then 1000 (the block).
  EXPECT_TRUE(torch::equal(s.targets.boxes, torch::tensor({{7.f, 5.f, 8.f, 6.f}, {2.f, 1.f, 5.f, 3.f}})));
  EXPECT_TRUE(torch::equal(s.targets.labels, torch::tensor({int64_t{1}, int64_t{1}})));
  EXPECT_EQ(s.targets.masks[1].sum().item<int64_t>(), 6);
  EXPECT_TRUE(torch::equal(s.targets.masks[0] + s.targets.masks[1], two_instances(1, 1).to(torch::kUInt8)));
}

TEST(FolderDataset, ClassPerFolderLayout) {
  TestDir dir;
  add_pair(dir, "zebra", "x", two_instances(1, 2));
  add_pair(dir, "ant", "y", two_instances(3, 0).slice(0, 0, 4));
  const FolderDataset dataset(dir.file(""));
  EXPECT_EQ(dataset.categories().class_names(), (std::vector<std::string>{"__background__", "ant", "zebra"}));
  const Sample ant = dataset.get(0), zebra = dataset.get(1);
  EXPECT_TRUE(torch::equal(ant.targets.labels, torch::tensor({int64_t{1}})));
  EXPECT_TRUE(torch::equal(zebra.targets.labels, torch::tensor({int64_t{2}, int64_t{2}})));
  EXPECT_EQ(ant.image.sizes(), (std::vector<int64_t>{3, 4, 8}));
}

TEST(FolderDataset, MissingOrMismatchedMasksNameBothFiles) {
  TestDir dir;
  add_pair(dir, ".", "good", two_instances(1, 2));
  write_image_png(dir.file("images/lonely.png"), torch::rand({3, 6, 8}));
  EXPECT_THAT(input_error_of([&] { FolderDataset{dir.file("")}; }),
              HasSubstr("images/lonely.png: no instance mask (expected " + dir.file("masks/lonely.png") + ")"));

  std::filesystem::remove(dir.file("images/lonely.png"));
  write_label_png(dir.file("masks/good.png"), torch::zeros({5, 8}, torch::kInt64));
  const FolderDataset dataset(dir.file(""));
  const std::string message = input_error_of([&] { dataset.get(0); });
  EXPECT_THAT(message, HasSubstr("masks/good.png: mask is 8x5 but its image"));
  EXPECT_THAT(message, HasSubstr("images/good.png is 8x6"));

  EXPECT_THAT(input_error_of([&] { FolderDataset{dir.file("nowhere")}; }), HasSubstr("dataset folder not found"));
  std::filesystem::create_directories(dir.file("empty/sub"));
  EXPECT_THAT(input_error_of([&] { FolderDataset{dir.file("empty")}; }), HasSubstr("no images/ folder"));
}

}  // namespace
}  // namespace instseg::data
