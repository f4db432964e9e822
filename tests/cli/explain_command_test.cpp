// `instseg explain` run as a program on bad input: each case is one error line that names what is
// wrong (the missing options, the unreadable image, the annotation file and the image it lacks),
// a non-zero exit, and nothing written in --out.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_support.h"
#include "explain/explain_fixture.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using testing::expect_one_error;
using testing::run_instseg;
using testing::TestDir;

TEST(ExplainCommand, NeitherWeightsNorGtIsOneErrorNamingBoth) {
  TestDir dir;
  const auto files = testing::write_tiny_coco(dir / "data");
  const auto run = run_instseg({"explain", "--input", files.image, "--out", dir / "out"}, dir / "scratch");
  expect_one_error(run, {"--weights", "--gt"});
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(ExplainCommand, UnreadableImageIsOneErrorNamingTheFile) {
  TestDir dir;
  const auto files = testing::write_tiny_coco(dir / "data");
  // The annotations list shapes.png, but the file holds no picture.
  std::ofstream(files.image, std::ios::trunc) << "not a picture";
  const auto run = run_instseg({"explain", "--input", files.image, "--gt", files.annotations, "--out", dir / "out"},
                               dir / "scratch");
  expect_one_error(run, {"shapes.png"});
  EXPECT_FALSE(fs::exists(dir / "out"));

  // A file that does not exist at all.
  fs::remove(files.image);
  const auto missing = run_instseg(
      {"explain", "--input", files.image, "--gt", files.annotations, "--out", dir / "out"}, dir / "scratch");
  expect_one_error(missing, {"shapes.png"});
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(ExplainCommand, ImageNotInTheAnnotationsIsOneErrorNamingBoth) {
  TestDir dir;
  const auto files = testing::write_tiny_coco(dir / "data");
  const std::string other = dir / "data/elsewhere.png";
  fs::copy_file(files.image, other);
  const auto run =
      run_instseg({"explain", "--input", other, "--gt", files.annotations, "--out", dir / "out"}, dir / "scratch");
  expect_one_error(run, {files.annotations, "elsewhere.png"});
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
}  // namespace instseg
