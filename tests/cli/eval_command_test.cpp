// `instseg eval` end to end on a fixture: printed summary equals pycocotools' text, --json numbers
// equal its stats, --plots writes the pictures (from the same single reading of the results, so
// a pipe works), and bad results are InputErrors naming the entry.
#include <CLI/CLI.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "instseg/cli/commands.h"
#include "instseg/engine/eval_job.h"
#include "instseg/errors.h"
#include "support/reference.h"
#include "support/test_dir.h"

namespace instseg::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string fixture(const std::string& name) { return testing::source_path("tests/fixtures/coco_eval/" + name); }

// Runs `instseg eval ARGS` and returns what it printed.
std::string run_eval(std::vector<std::string> args) {
  CLI::App app;
  register_eval(app);
  args.insert(args.begin(), "eval");
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments reversed
  ::testing::internal::CaptureStdout();
  try {
    app.parse(args);
  } catch (...) {
    ::testing::internal::GetCapturedStdout();
    throw;
  }
  return ::testing::internal::GetCapturedStdout();
}

TEST(EvalCommand, PrintsPycocotoolsSummaryAndWritesJsonAndPlots) {
  const json expected = json::parse(std::ifstream(fixture("public_synth.expected.json")));
  const fs::path dir = fs::path(::testing::TempDir()) / "instseg_eval_command";
  fs::remove_all(dir);
  const std::string out_json = (dir / "eval.json").string();
  fs::create_directories(dir);
  const std::string printed = run_eval({"--gt", fixture(expected["ground_truth"]), "--results", fixture(expected["results"]),
                                        "--json", out_json, "--plots", (dir / "plots").string(), "--per-class", "--threads", "2"});
  for (const char* type : {"bbox", "segm"}) {
    for (const auto& line : expected[type]["summary_lines"]) EXPECT_THAT(printed, ::testing::HasSubstr(line.get<std::string>()));
  }
  EXPECT_THAT(printed, ::testing::HasSubstr("AP50"));
  const json written = json::parse(std::ifstream(out_json));
  for (const char* type : {"bbox", "segm"}) {
    for (int i = 0; i < 12; ++i) EXPECT_NEAR(written[type]["stats"][i].get<double>(), expected[type]["stats"][i].get<double>(), 1e-9);
    EXPECT_EQ(written[type]["per_category"].size(), expected[type]["per_category"].size());
    for (const auto& [id, ap] : expected[type]["per_category"].items()) EXPECT_NEAR(written[type]["per_category"][id].get<double>(), ap.get<double>(), 1e-9);
    EXPECT_TRUE(fs::file_size(dir / "plots" / ("pr_" + std::string(type) + "_iou50.png")) > 1000);
    EXPECT_TRUE(fs::exists(dir / "plots" / ("confusion_" + std::string(type) + ".csv")));
  }
  fs::remove_all(dir);
}

// A pipe holding `bytes` with its write end closed, named /dev/fd/N: what a shell's
// `<(zcat results.json.gz)` hands a program. It can be read once; a second reading finds it empty.
class FilledPipe {
 public:
  explicit FilledPipe(const std::string& bytes) {
    // Within a pipe's 64 KB buffer, so the write completes before anyone reads.
    if (bytes.size() >= 65536) throw std::runtime_error("FilledPipe: more than a pipe buffer");
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe() failed");
    for (size_t done = 0; done < bytes.size();) {
      const ssize_t n = ::write(fds_[1], bytes.data() + done, bytes.size() - done);
      if (n <= 0) throw std::runtime_error("write to pipe failed");
      done += size_t(n);
    }
    ::close(fds_[1]);
  }
  ~FilledPipe() { ::close(fds_[0]); }
  std::string path() const { return "/dev/fd/" + std::to_string(fds_[0]); }

 private:
  int fds_[2] = {-1, -1};
};

// --results from a pipe (as `--results <(zcat results.json.gz)`) with --plots and --json: the
// results are read once, and the plots, the JSON and the returned numbers come from that one
// evaluation (equal to pycocotools'). Reading the file again for the confusion matrix (as the
// command once did) finds the pipe empty and fails.
TEST(EvalCommand, ReadsItsResultsOnceSoPlotsAndJsonComeFromOneEvaluation) {
  const json expected = json::parse(std::ifstream(fixture("public_synth.expected.json")));
  const fs::path dir = fs::path(::testing::TempDir()) / "instseg_eval_job_pipe";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ifstream in(fixture(expected["results"]), std::ios::binary);
  const FilledPipe pipe(std::string(std::istreambuf_iterator<char>(in), {}));
  EvalJobOptions options;
  options.gt = fixture(expected["ground_truth"]);
  options.results = pipe.path();
  options.json_out = (dir / "eval.json").string();
  options.plots_dir = (dir / "plots").string();
  options.threads = 2;
  std::ostringstream printed;
  EvalJobOutcome outcome;
  try {
    outcome = run_eval_job(options, printed);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  ASSERT_EQ(outcome.results.size(), 2u);
  ASSERT_EQ(outcome.confusion.size(), 2u);
  const json written = json::parse(std::ifstream(options.json_out));
  for (size_t t = 0; t < 2; ++t) {
    const std::string type = t == 0 ? "bbox" : "segm";
    for (int i = 0; i < 12; ++i) {
      EXPECT_NEAR(outcome.results[t].stats[i], expected[type]["stats"][i].get<double>(), 1e-9) << type << i;
      EXPECT_NEAR(written[type]["stats"][i].get<double>(), outcome.results[t].stats[i], 1e-12) << type << i;
    }
    // The confusion matrix saw the ground truth the evaluation scored: each true class's row
    // (matched to some class, or missed) adds up to that class's non-crowd GT count.
    const auto& m = outcome.confusion[t];
    ASSERT_EQ(m.category_ids, outcome.results[t].category_ids) << type;
    for (size_t r = 0; r < m.category_ids.size(); ++r) {
      int64_t row = 0;
      for (size_t c = 0; c <= m.category_ids.size(); ++c) row += m.at(r, c);
      EXPECT_EQ(row, outcome.results[t].num_gt[r]) << type << " category " << m.category_ids[r];
    }
    const std::string csv = testing::read_file_bytes((dir / "plots" / ("confusion_" + type + ".csv")).string());
    EXPECT_EQ(csv, m.to_csv()) << type;
  }
  EXPECT_THAT(printed.str(), ::testing::HasSubstr(expected["segm"]["summary_lines"][0].get<std::string>()));
  fs::remove_all(dir);
}

TEST(EvalCommand, BadResultsAreInputErrors) {
  const fs::path dir = fs::path(::testing::TempDir()) / "instseg_eval_command_bad";
  fs::create_directories(dir);
  const std::string gt = fixture("gt/public_synth_gt.json"), bad = (dir / "bad.json").string();
  std::ofstream(bad) << R"([{"image_id": 10, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5},
                            {"image_id": 99, "category_id": 3, "bbox": [1, 1, 4, 4], "score": 0.5}])";
  EXPECT_THAT([&] { run_eval({"--gt", gt, "--results", bad}); },
              ::testing::ThrowsMessage<InputError>(::testing::HasSubstr("bad.json: results[1].image_id")));
  std::ofstream(bad) << "[]";
  EXPECT_THAT([&] { run_eval({"--gt", gt, "--results", bad}); },
              ::testing::ThrowsMessage<InputError>(::testing::HasSubstr("the results list is empty")));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace instseg::cli
