// The installed package as a user meets it: `cmake --install` of this build into a fresh prefix,
// examples/consumer configured against it with find_package(instseg) alone (no path into this
// tree), built, and run on a picture: its detections must be the installed `instseg predict`'s.
// Also: the installed API header compiles with OpenCV's headers alone (no LibTorch on the path).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_support.h"
#include "support/reference.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::run_captured;
using testing::shell_quote;
using testing::TestDir;

// A step of the user's: a program with arguments, stopped at the first failure with its output.
void must_run(const std::string& what, const std::string& program, const std::vector<std::string>& args,
              const TestDir& dir, testing::ProgramResult* result = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  const auto run = run_captured(shell_quote(program), args, dir / "logs", what + "_");
  std::cerr << what << ": " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << " s\n";
  ASSERT_EQ(run.exit_code, 0) << what << " failed:\n" << run.out << "\n" << run.err;
  if (result) *result = run;
}

TEST(Package, InstalledConsumerPredictsAsInstalledProgram) {
  TestDir dir;
  const std::string prefix = dir / "prefix";
  must_run("install", INSTSEG_CMAKE, {"--install", INSTSEG_BINARY_DIR, "--prefix", prefix}, dir);
  if (::testing::Test::HasFatalFailure()) return;
  // What find_package(instseg) reads, and the program, are where the docs say.
  for (const char* file : {"bin/instseg", "include/instseg/instseg.h", "include/instseg/errors.h"}) {
    EXPECT_TRUE(fs::exists(fs::path(prefix) / file)) << file;
  }
  const fs::path libdir = INSTSEG_INSTALL_LIBDIR;  // GNUInstallDirs' CMAKE_INSTALL_LIBDIR
  for (const char* file : {"cmake/instseg/instsegConfig.cmake", "cmake/instseg/instsegConfigVersion.cmake",
                           "cmake/instseg/instsegTargets.cmake", "libinstseg_api.a"}) {
    EXPECT_TRUE(fs::exists(fs::path(prefix) / libdir / file)) << file;
  }

  // The API header needs OpenCV's core header and nothing of LibTorch (its promise: pimpl).
  const std::string unit = dir.write("api_only.cpp", "#include <instseg/instseg.h>\nint main() { return 0; }\n");
  must_run("header", INSTSEG_CXX_COMPILER,
           {"-std=c++17", "-fsyntax-only", "-I" + prefix + "/include", "-I" INSTSEG_OPENCV_INCLUDE, unit}, dir);
  if (::testing::Test::HasFatalFailure()) return;

  // The consumer sees only the prefix: CMAKE_PREFIX_PATH, as docs/api.md tells a user.
  const std::string build = dir / "consumer-build";
  must_run("configure", INSTSEG_CMAKE,
           {"-S", testing::source_path("examples/consumer"), "-B", build, "-DCMAKE_PREFIX_PATH=" + prefix,
            "-DCMAKE_CXX_COMPILER=" INSTSEG_CXX_COMPILER, "-DCMAKE_BUILD_TYPE=Release"},
           dir);
  if (::testing::Test::HasFatalFailure()) return;
  must_run("build", INSTSEG_CMAKE, {"--build", build, "-j2"}, dir);
  if (::testing::Test::HasFatalFailure()) return;

  // r18.pth at 320/512 px, one thread (two spin-wait for each other when ctest shares the cores).
  const std::string weights = testing::reference_dir("interop_cli") + "/r18.pth";
  const std::string image = testing::source_path("datasets/tiny_coco/val2017/000000087038.jpg");
  testing::ProgramResult consumer;
  must_run("consumer", build + "/instseg_consumer", {weights, image, "320", "512", "1"}, dir, &consumer);
  if (::testing::Test::HasFatalFailure()) return;
  must_run("predict", prefix + "/bin/instseg",
           {"predict", "--weights", weights, "--input", image, "--out", dir / "predict", "--min-size", "320",
            "--max-size", "512", "--threads", "1", "--no-overlays"},
           dir);
  if (::testing::Test::HasFatalFailure()) return;

  const std::string expected = testing::read_file_bytes(dir / "predict/predictions.json");
  EXPECT_GT(json::parse(expected).size(), 0u) << "nothing to compare";
  EXPECT_EQ(consumer.out, expected);  // the same text: ids, boxes, scores and RLE masks
}

}  // namespace
}  // namespace instseg
