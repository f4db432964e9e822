// `instseg predict` run as a program: COCO results out, overlays, image ids from --coco-gt, bad
// images reported by name while the good ones are predicted, bad checkpoints rejected before
// anything is written, the legacy checkpoint format predicting exactly like the zip one, images
// over the pixel limit refused from their header, memory per image pixel bounded, and inputs
// sharing a name refused or given distinct overlays.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <string>
#include <vector>

#include "cli_support.h"
#include "support/reference.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::run_instseg;
using testing::TestDir;

std::string input(const std::string& name) { return testing::reference_dir("interop_cli") + "/" + name; }
std::string coco_image(const std::string& file) { return testing::source_path("datasets/tiny_coco/val2017/" + file); }
std::string coco_gt() { return testing::source_path("datasets/tiny_coco/annotations/instances_val2017.json"); }

// r18.pth (tests/reference/interop_cli.py) is a ResNet-18-FPN Mask R-CNN with narrow heads in
// torchvision's layout: what these tests check (files, ids, errors, sizes, memory per pixel) does
// not depend on the depth or width, and it runs in about half ResNet-50's time. The first test
// keeps torchvision's own maskrcnn_resnet50_fpn (v1.pth). Small sizes keep either at a few seconds
// per image on a loaded 2-core machine.
std::vector<std::string> predict_args(const std::string& weights, const std::vector<std::string>& inputs,
                                      const std::string& out) {
  std::vector<std::string> args = {"predict", "--weights", weights, "--out", out, "--min-size", "320", "--max-size", "512",
                                   "--threads", "2"};
  for (const auto& i : inputs) {
    args.push_back("--input");
    args.push_back(i);
  }
  return args;
}

json read_json(const std::string& path) { return json::parse(testing::read_file_bytes(path)); }

// Checks one COCO results entry and returns its file_name.
std::string check_entry(const json& e, const std::map<std::string, std::pair<int, int>>& sizes) {
  EXPECT_TRUE(e["image_id"].is_number_integer());
  EXPECT_TRUE(e["category_id"].is_number_integer());
  EXPECT_GE(e["category_id"].get<int>(), 1);
  EXPECT_LE(e["category_id"].get<int>(), 90);
  EXPECT_EQ(e["bbox"].size(), 4u);
  const double score = e["score"].get<double>();
  EXPECT_GE(score, 0.05);
  EXPECT_LE(score, 1.0);
  const std::string file = e["file_name"].get<std::string>();
  const auto it = sizes.find(file);
  EXPECT_NE(it, sizes.end()) << "unexpected file_name " << file;
  if (it != sizes.end()) {
    const auto [h, w] = it->second;
    EXPECT_EQ(e["segmentation"]["size"], json::array({h, w})) << file;
    const auto& b = e["bbox"];
    EXPECT_GE(b[0].get<double>(), -1e-3);
    EXPECT_GE(b[1].get<double>(), -1e-3);
    EXPECT_LE(b[0].get<double>() + b[2].get<double>(), w + 1e-3);
    EXPECT_LE(b[1].get<double>() + b[3].get<double>(), h + 1e-3);
  }
  EXPECT_TRUE(e["segmentation"]["counts"].is_string());
  EXPECT_FALSE(e["segmentation"]["counts"].get<std::string>().empty());
  return file;
}

// torchvision's maskrcnn_resnet50_fpn layout, as users bring it.
TEST(PredictCommand, WritesCocoResultsWithGroundTruthImageIdsAndOverlays) {
  TestDir dir;
  auto args = predict_args(input("v1.pth"), {coco_image("000000037777.jpg"), coco_image("000000087038.jpg")}, dir / "out");
  args.insert(args.end(), {"--coco-gt", coco_gt()});
  const auto run = run_instseg(args, dir.str());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(run.error_lines().empty()) << run.err;
  const json predictions = read_json(dir / "out/predictions.json");
  ASSERT_TRUE(predictions.is_array());
  const std::map<std::string, std::pair<int, int>> sizes = {{"000000037777.jpg", {230, 352}}, {"000000087038.jpg", {480, 640}}};
  const std::map<std::string, int64_t> ids = {{"000000037777.jpg", 37777}, {"000000087038.jpg", 87038}};
  std::map<std::string, int> per_file;
  for (const auto& e : predictions) {
    const std::string file = check_entry(e, sizes);
    ++per_file[file];
    if (ids.count(file)) EXPECT_EQ(e["image_id"].get<int64_t>(), ids.at(file)) << "image id not taken from --coco-gt";
  }
  EXPECT_GT(per_file["000000037777.jpg"], 0);
  EXPECT_GT(per_file["000000087038.jpg"], 0);
  for (const char* stem : {"000000037777", "000000087038"}) {
    const fs::path overlay = fs::path(dir / "out") / (std::string(stem) + ".overlay.jpg");
    ASSERT_TRUE(fs::exists(overlay)) << overlay;
    EXPECT_GT(fs::file_size(overlay), 1000u);
  }
}

TEST(PredictCommand, LegacyCheckpointPredictsLikeTheZipOne) {
  TestDir dir;
  // No --coco-gt: image ids are 1, 2, ... in input order.
  const std::vector<std::string> images = {coco_image("000000037777.jpg"), input("gray.png")};
  auto zip_args = predict_args(input("r18.pth"), images, dir / "zip");
  auto legacy_args = predict_args(input("r18_legacy.pth"), images, dir / "legacy");
  zip_args.push_back("--no-overlays");
  legacy_args.push_back("--no-overlays");
  const auto zip = run_instseg(zip_args, dir / "zip_streams");
  const auto legacy = run_instseg(legacy_args, dir / "legacy_streams");
  ASSERT_EQ(zip.exit_code, 0) << zip.err;
  ASSERT_EQ(legacy.exit_code, 0) << legacy.err;
  const json a = read_json(dir / "zip/predictions.json"), b = read_json(dir / "legacy/predictions.json");
  ASSERT_GT(a.size(), 0u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["image_id"], b[i]["image_id"]);
    EXPECT_EQ(a[i]["category_id"], b[i]["category_id"]);
    EXPECT_EQ(a[i]["segmentation"], b[i]["segmentation"]);
    EXPECT_NEAR(a[i]["score"].get<double>(), b[i]["score"].get<double>(), 1e-6);
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(a[i]["bbox"][k].get<double>(), b[i]["bbox"][k].get<double>(), 1e-4);
  }
  std::set<int64_t> image_ids;
  for (const auto& e : a) image_ids.insert(e["image_id"].get<int64_t>());
  EXPECT_EQ(image_ids, (std::set<int64_t>{1, 2}));
  EXPECT_FALSE(fs::exists(dir / "zip/000000037777.overlay.jpg")) << "--no-overlays still drew";
}

// A run folder written by `instseg train` holds config.json beside the weights: without
// --min-size, predict uses the training size from it; an explicit --min-size still wins.
TEST(PredictCommand, TrainedRunFolderPredictsAtItsTrainingSizeUnlessTold) {
  TestDir dir;
  fs::create_directories(dir / "run");
  fs::copy_file(input("r18.pth"), dir / "run/model_last.pth");
  dir.write("run/config.json", R"({"model": {"min_sizes": [256, 320], "max_size": 512}})");
  const std::vector<std::string> images = {coco_image("000000037777.jpg")};
  auto predictions_with = [&](const std::string& weights, const std::vector<std::string>& sizes, const std::string& name) {
    std::vector<std::string> args = {"predict", "--weights", weights, "--out", dir / name, "--threads", "2",
                                     "--no-overlays", "--input", images[0]};
    args.insert(args.end(), sizes.begin(), sizes.end());
    const auto run = run_instseg(args, dir / (name + "_streams"));
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return read_json(dir / (name + "/predictions.json"));
  };
  const json automatic = predictions_with(dir / "run/model_last.pth", {}, "automatic");
  const json explicit_size = predictions_with(input("r18.pth"), {"--min-size", "320", "--max-size", "512"}, "explicit");
  const json overridden = predictions_with(dir / "run/model_last.pth", {"--min-size", "288"}, "overridden");
  const json other_size = predictions_with(input("r18.pth"), {"--min-size", "288", "--max-size", "512"}, "other");
  ASSERT_GT(automatic.size(), 0u);
  EXPECT_EQ(automatic, explicit_size);  // the last training size, as torchvision evaluates
  EXPECT_EQ(overridden, other_size);
  EXPECT_NE(automatic, overridden);
}

// The mask paste a run was validated with (model.mask_paste in its config.json) is predict's
// default for its weights; --mask-paste overrides it; an unknown name is one error.
TEST(PredictCommand, MaskPasteComesFromTheRunFolderUnlessTold) {
  TestDir dir;
  fs::create_directories(dir / "run");
  fs::copy_file(input("r18.pth"), dir / "run/model_last.pth");
  dir.write("run/config.json", R"({"model": {"min_sizes": [320], "max_size": 512, "mask_paste": "aligned"}})");
  const std::string image = coco_image("000000037777.jpg");
  auto predictions_with = [&](const std::string& weights, std::vector<std::string> extra, const std::string& name) {
    std::vector<std::string> args = {"predict", "--weights", weights, "--out", dir / name, "--threads", "2",
                                     "--no-overlays", "--input", image};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto run = run_instseg(args, dir / (name + "_streams"));
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return read_json(dir / (name + "/predictions.json"));
  };
  const std::vector<std::string> size = {"--min-size", "320", "--max-size", "512"};
  auto with_size = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), size.begin(), size.end());
    return extra;
  };
  const json from_run = predictions_with(dir / "run/model_last.pth", {}, "from_run");
  const json aligned = predictions_with(input("r18.pth"), with_size({"--mask-paste", "aligned"}), "aligned");
  const json plain = predictions_with(input("r18.pth"), size, "plain");
  const json told = predictions_with(dir / "run/model_last.pth", {"--mask-paste", "torchvision"}, "told");
  ASSERT_GT(from_run.size(), 0u);
  EXPECT_EQ(from_run, aligned);
  EXPECT_EQ(told, plain);  // without config.json or --mask-paste: torchvision's paste
  // Same detections, differently placed masks.
  ASSERT_EQ(aligned.size(), plain.size());
  int moved = 0;
  for (size_t i = 0; i < aligned.size(); ++i) {
    EXPECT_EQ(aligned[i]["bbox"], plain[i]["bbox"]);
    EXPECT_EQ(aligned[i]["score"], plain[i]["score"]);
    moved += aligned[i]["segmentation"] != plain[i]["segmentation"];
  }
  EXPECT_GT(moved, 0);

  const auto bad = run_instseg({"predict", "--weights", input("r18.pth"), "--out", dir / "bad", "--input", image,
                                "--mask-paste", "exact"},
                               dir / "bad_streams");
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  ASSERT_EQ(bad.error_lines().size(), 1u) << bad.err;
  EXPECT_THAT(bad.error_lines()[0], HasSubstr("--mask-paste"));
  EXPECT_FALSE(fs::exists(dir / "bad/predictions.json"));
}

TEST(PredictCommand, MissingInputIsOneErrorAndWritesNothing) {
  TestDir dir;
  const std::string missing = dir / "nope/absent.jpg";
  const auto run = run_instseg(predict_args(input("r18.pth"), {missing}, dir / "out"), dir.str());
  EXPECT_EQ(run.exit_code, 1);
  const auto lines = run.error_lines();
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_THAT(lines[0], HasSubstr(missing));
  EXPECT_FALSE(fs::exists(dir / "out/predictions.json"));
}

TEST(PredictCommand, EmptyFileAloneIsReportedByNameAndExitsOne) {
  TestDir dir;
  const std::string empty = dir / "empty.jpg";
  std::ofstream(empty).close();
  const auto run = run_instseg(predict_args(input("r18.pth"), {empty}, dir / "out"), dir.str());
  EXPECT_EQ(run.exit_code, 1);
  int naming = 0;
  for (const auto& line : run.error_lines()) naming += line.find("empty.jpg") != std::string::npos;
  EXPECT_EQ(naming, 1) << run.err;
  EXPECT_THAT(run.err, HasSubstr("0 bytes"));
  // Documented: predictions.json is written once all images are done; here it lists nothing.
  const json predictions = read_json(dir / "out/predictions.json");
  EXPECT_TRUE(predictions.is_array());
  EXPECT_EQ(predictions.size(), 0u);
}

TEST(PredictCommand, FolderMixingGoodAndBadImagesPredictsTheGoodOnesAndNamesEachBadOne) {
  TestDir dir;
  const std::string images = dir / "images";
  fs::create_directories(images);
  const std::string jpeg = testing::read_file_bytes(coco_image("000000037777.jpg"));
  std::ofstream(images + "/bad_empty.jpg").close();
  std::ofstream(images + "/bad_text.jpg") << "this is a text file, not a JPEG\n";
  std::ofstream(images + "/bad_truncated.jpg", std::ios::binary) << jpeg.substr(0, jpeg.size() / 2);
  std::ofstream(images + "/good.jpg", std::ios::binary) << jpeg;
  fs::copy_file(input("gray.png"), images + "/gray.png");
  fs::copy_file(input("rgba.png"), images + "/rgba.png");
  std::ofstream(images + "/notes.txt") << "not an image: skipped\n";
  const auto run = run_instseg(predict_args(input("r18.pth"), {images}, dir / "out"), dir.str());
  EXPECT_EQ(run.exit_code, 1) << run.err;
  const auto lines = run.error_lines();
  for (const char* bad : {"bad_empty.jpg", "bad_text.jpg", "bad_truncated.jpg"}) {
    int naming = 0;
    for (const auto& line : lines) naming += line.find(bad) != std::string::npos;
    EXPECT_EQ(naming, 1) << bad << " is not reported exactly once:\n" << run.err;
  }
  EXPECT_THAT(run.err, HasSubstr("truncated JPEG"));
  for (const char* good : {"good.jpg", "gray.png", "rgba.png", "notes.txt"}) {
    for (const auto& line : lines) EXPECT_EQ(line.find(good), std::string::npos) << line;
  }
  const json predictions = read_json(dir / "out/predictions.json");
  const std::map<std::string, std::pair<int, int>> sizes = {{"good.jpg", {230, 352}}, {"gray.png", {230, 352}}, {"rgba.png", {230, 352}}};
  std::map<std::string, int> per_file;
  std::map<std::string, std::set<int64_t>> ids;
  for (const auto& e : predictions) {
    const std::string file = check_entry(e, sizes);
    ++per_file[file];
    ids[file].insert(e["image_id"].get<int64_t>());
  }
  EXPECT_EQ(per_file.size(), 3u);
  for (const char* good : {"good.jpg", "gray.png", "rgba.png"}) {
    EXPECT_GT(per_file[good], 0) << good << " has no predictions";
    EXPECT_EQ(ids[good].size(), 1u) << good;
    EXPECT_TRUE(fs::exists(dir / ("out/" + fs::path(good).stem().string() + ".overlay.jpg"))) << good;
  }
}

void expect_checkpoint_rejected(const std::string& weights, const std::string& named) {
  TestDir dir;
  const auto run = run_instseg(predict_args(weights, {coco_image("000000037777.jpg")}, dir / "out"), dir.str());
  EXPECT_EQ(run.exit_code, 1);
  const auto lines = run.error_lines();
  ASSERT_EQ(lines.size(), 1u) << run.err;
  EXPECT_THAT(lines[0], HasSubstr(named));
  EXPECT_FALSE(fs::exists(dir / "out/predictions.json"));
}

TEST(PredictCommand, TruncatedCheckpointIsOneErrorNamingIt) {
  expect_checkpoint_rejected(input("truncated.pth"), "truncated.pth");
}

TEST(PredictCommand, CheckpointOfAnotherArchitectureIsOneErrorNamingIt) {
  expect_checkpoint_rejected(input("resnet18_cls.pth"), "resnet18_cls.pth");
}

TEST(PredictCommand, MissingCheckpointIsOneErrorNamingIt) {
  TestDir dir;
  expect_checkpoint_rejected(dir / "absent_model.pth", "absent_model.pth");
}

// A JPEG that declares width x height in its frame header and stops there (no pixel data).
std::string jpeg_header_only(int width, int height) {
  return std::string("\xFF\xD8\xFF\xC0\x00\x11\x08", 7) + char(height >> 8) + char(height) + char(width >> 8) +
         char(width) + std::string("\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01", 10);
}

TEST(PredictCommand, ImagesOverThePixelLimitAreRefusedByNameFromTheirHeader) {
  TestDir dir;
  const std::string images = dir / "images";
  fs::create_directories(images);
  // 12000 x 9000 declared by 27 bytes: refused before any decoding (else "truncated JPEG").
  std::ofstream(images + "/photo.jpg", std::ios::binary) << jpeg_header_only(12000, 9000);
  fs::copy_file(coco_image("000000037777.jpg"), images + "/good.jpg");
  const auto start = std::chrono::steady_clock::now();
  auto args = predict_args(input("r18.pth"), {images}, dir / "out");
  const auto run = run_instseg(args, dir / "streams");
  EXPECT_EQ(run.exit_code, 1) << run.err;
  const auto lines = run.error_lines();
  ASSERT_EQ(lines.size(), 2u) << run.err;  // the image, then "1 of 2 inputs could not be predicted"
  EXPECT_THAT(lines[0], HasSubstr("photo.jpg: 12000x9000 = 108.0 megapixels exceeds the limit of 100000000 pixels "
                                  "(--max-image-pixels)"));
  EXPECT_THAT(lines[1], HasSubstr("1 of 2 inputs"));
  const json predictions = read_json(dir / "out/predictions.json");
  ASSERT_GT(predictions.size(), 0u);
  for (const auto& e : predictions) EXPECT_EQ(e["file_name"], "good.jpg");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 120);

  // A lower limit refuses the ordinary picture too; the limit must be in [1, 2^30].
  args = predict_args(input("r18.pth"), {images + "/good.jpg"}, dir / "low");
  args.insert(args.end(), {"--max-image-pixels", "80000"});
  const auto low = run_instseg(args, dir / "low_streams");
  EXPECT_EQ(low.exit_code, 1) << low.err;
  EXPECT_THAT(low.err, HasSubstr("good.jpg: 352x230 = 0.1 megapixels exceeds the limit of 80000 pixels"));
  for (const char* bad : {"0", "1073741825"}) {
    args = predict_args(input("r18.pth"), {images + "/good.jpg"}, dir / "bad");
    args.insert(args.end(), {"--max-image-pixels", bad});
    const auto refused = run_instseg(args, dir / "bad_streams");
    EXPECT_EQ(refused.exit_code, 1) << refused.err;
    ASSERT_EQ(refused.error_lines().size(), 1u) << refused.err;
    EXPECT_THAT(refused.error_lines()[0], HasSubstr("--max-image-pixels must be in [1, 1073741824]"));
    EXPECT_FALSE(fs::exists(dir / "bad")) << "an output folder for a run that did nothing";
  }
}

TEST(PredictCommand, InputsSharingAFileNameAreRefusedBeforeAnythingRuns) {
  TestDir dir;
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");
  fs::copy_file(coco_image("000000037777.jpg"), dir / "a/x.jpg");
  fs::copy_file(coco_image("000000087038.jpg"), dir / "b/x.jpg");
  const auto expect_refused = [&](const std::vector<std::string>& inputs, const std::vector<std::string>& named,
                                  const std::vector<std::string>& extra) {
    auto args = predict_args(input("r18.pth"), inputs, dir / "out");
    args.insert(args.end(), extra.begin(), extra.end());
    const auto run = run_instseg(args, dir / "streams");
    EXPECT_EQ(run.exit_code, 1) << run.err;
    const auto lines = run.error_lines();
    ASSERT_EQ(lines.size(), 1u) << run.err;
    for (const auto& name : named) EXPECT_THAT(lines[0], HasSubstr(name));
    EXPECT_FALSE(fs::exists(dir / "out")) << "an output folder for a run that did nothing";
  };
  const std::string sharing = "have the same file name x.jpg";
  expect_refused({dir / "a/x.jpg", dir / "b/x.jpg"}, {dir / "a/x.jpg", dir / "b/x.jpg", sharing}, {});
  // With --coco-gt both would take the one image id of that file name.
  const std::string coco_name = "000000037777.jpg";
  fs::create_directories(dir / "c");
  fs::create_directories(dir / "d");
  fs::copy_file(coco_image(coco_name), dir / ("c/" + coco_name));
  fs::copy_file(coco_image("000000087038.jpg"), dir / ("d/" + coco_name));
  expect_refused({dir / ("c/" + coco_name), dir / ("d/" + coco_name)},
                 {dir / ("c/" + coco_name), dir / ("d/" + coco_name), "have the same file name " + coco_name},
                 {"--coco-gt", coco_gt()});
  expect_refused({dir / "a", dir / "b"}, {dir / "a/x.jpg", dir / "b/x.jpg", sharing}, {});
  expect_refused({dir / "a/x.jpg", dir / "a"}, {dir / "a/x.jpg", "is given twice"}, {});
}

TEST(PredictCommand, InputsSharingAStemGetOneOverlayEach) {
  TestDir dir;
  fs::create_directories(dir / "images");
  fs::copy_file(coco_image("000000037777.jpg"), dir / "images/x.jpg");
  fs::copy_file(input("gray.png"), dir / "images/x.png");
  fs::copy_file(coco_image("000000087038.jpg"), dir / "images/y.jpg");
  const auto run = run_instseg(predict_args(input("r18.pth"), {dir / "images"}, dir / "out"), dir / "streams");
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_TRUE(fs::exists(dir / "out/x.jpg.overlay.jpg"));
  EXPECT_TRUE(fs::exists(dir / "out/x.png.overlay.jpg"));
  EXPECT_TRUE(fs::exists(dir / "out/y.overlay.jpg"));  // a stem of its own keeps the short name
  EXPECT_FALSE(fs::exists(dir / "out/x.overlay.jpg"));
  // The two overlays are different pictures (colour and gray), not one written twice.
  EXPECT_NE(testing::read_file_bytes(dir / "out/x.jpg.overlay.jpg"),
            testing::read_file_bytes(dir / "out/x.png.overlay.jpg"));
}

// The peak resident memory of one run of the instseg program, from the kernel's accounting of
// that child alone (wait4), in bytes.
struct MeasuredRun {
  int exit_code = -1;
  int64_t max_rss_bytes = 0;
};

MeasuredRun run_measured(const std::vector<std::string>& args, const std::string& scratch) {
  fs::create_directories(scratch);
  const std::string program = INSTSEG_BINARY_DIR "/instseg";
  const std::string out = scratch + "/stdout.txt", err = scratch + "/stderr.txt";
  std::vector<std::string> argv_strings = {program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err_fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0 || err_fd < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) _exit(126);
    execv(program.c_str(), argv.data());
    _exit(127);
  }
  MeasuredRun result;
  if (pid < 0) return result;
  int status = 0;
  rusage usage{};
  if (wait4(pid, &status, 0, &usage) != pid) return result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.max_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
  return result;
}

// Issue 14: predict held every detection's mask pasted at full resolution, ~290 bytes per image
// pixel (400 for 100 detections), so a photo exhausted the machine. The same picture enlarged 7x
// (352 x 230 -> 2464 x 1610, 4 megapixels) with 100 detections drawn and encoded may now add
// only what the picture itself needs (docs/model.md, "Memory").
TEST(PredictCommand, MemoryPerImagePixelIsBounded) {
  TestDir dir;
  const cv::Mat small = cv::imread(coco_image("000000037777.jpg"), cv::IMREAD_COLOR);
  ASSERT_EQ(small.cols, 352);
  cv::Mat large;
  cv::resize(small, large, cv::Size(small.cols * 7, small.rows * 7), 0, 0, cv::INTER_LINEAR);
  ASSERT_TRUE(cv::imwrite(dir / "large.jpg", large));
  ASSERT_TRUE(cv::imwrite(dir / "small.jpg", small));
  const auto measure = [&](const std::string& name) {
    auto args = predict_args(input("r18.pth"), {dir / (name + ".jpg")}, dir / name);
    args.insert(args.end(), {"--score-thresh", "0", "--show-thresh", "0"});  // the most detections, all drawn
    const MeasuredRun run = run_measured(args, dir / (name + "_streams"));
    EXPECT_EQ(run.exit_code, 0) << testing::read_file_bytes(dir / (name + "_streams/stderr.txt"));
    const json predictions = read_json(dir / (name + "/predictions.json"));
    EXPECT_GE(predictions.size(), 90u) << name;  // torchvision keeps at most 100 per image
    return run.max_rss_bytes;
  };
  const int64_t baseline = measure("small"), peak = measure("large");
  const double extra_pixels = double(large.total()) - double(small.total());
  const double bytes_per_pixel = double(peak - baseline) / extra_pixels;
  RecordProperty("bytes_per_pixel", std::to_string(bytes_per_pixel));
  std::cout << "peak RSS " << peak / 1e6 << " MB on 2464 x 1610, " << baseline / 1e6 << " MB on 352 x 230: "
            << bytes_per_pixel << " bytes per extra pixel\n";
  EXPECT_LT(bytes_per_pixel, 60.0);
}

}  // namespace
}  // namespace instseg
