// COCO evaluation speed: instseg's evaluator against pycocotools on the same files, same run.
// Builds a 5,000-image ground truth by replicating tiny_coco val, and synthetic results (jittered
// GT boxes and polygons, duplicates, false positives) at ~20 and ~100 results per image, in a
// temporary folder. Prints seconds, peak memory and, when pycocotools is given, its time, the
// speed-up and the largest difference between the 12 stats of both.
//   coco_eval_bench [--pycocotools DIR_WITH_pycocotools] [--images 5000] [--threads 0] [--keep]
#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <unistd.h>

#include "instseg/coco/dataset.h"
#include "instseg/coco/results.h"
#include "instseg/coco/rle.h"
#include "instseg/evaluation/coco_evaluator.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace instseg;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) / 1024.0;
}

// tiny_coco val repeated `copies` times; image and annotation ids made unique per copy.
json replicate_ground_truth(const json& val, int images) {
  json out = {{"images", json::array()}, {"annotations", json::array()}, {"categories", val["categories"]}};
  const int per_copy = int(val["images"].size());
  for (int copy = 0; copy * per_copy < images; ++copy) {
    const int64_t offset = int64_t(copy) * 10000000;
    for (const auto& im : val["images"]) {
      if (int(out["images"].size()) >= images) break;
      json c = {{"id", im["id"].get<int64_t>() + offset}, {"file_name", im["file_name"]},
                {"width", im["width"]}, {"height", im["height"]}};
      out["images"].push_back(c);
    }
    for (const auto& a : val["annotations"]) {
      json c = a;
      c["id"] = a["id"].get<int64_t>() + offset;
      c["image_id"] = a["image_id"].get<int64_t>() + offset;
      out["annotations"].push_back(std::move(c));
    }
  }
  // Drop annotations of images beyond the requested count.
  std::set<int64_t> kept;
  for (const auto& im : out["images"]) kept.insert(im["id"].get<int64_t>());
  json annotations = json::array();
  for (auto& a : out["annotations"]) {
    if (kept.count(a["image_id"].get<int64_t>())) annotations.push_back(std::move(a));
  }
  out["annotations"] = std::move(annotations);
  return out;
}

// Results for every image: a jittered copy of each GT (box and polygon mask), some duplicates,
// then false positives (random boxes of present and absent categories) up to `per_image`.
json make_results(const coco::Dataset& gt, int per_image, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1);
  std::normal_distribution<double> noise(0, 1);
  json results = json::array();
  const auto round3 = [](double v) { return std::round(v * 1000) / 1000; };
  for (const auto& im : gt.images()) {
    int made = 0;
    const auto add = [&](int64_t category, const std::array<double, 4>& box, const coco::Rle& mask, double score) {
      json r = {{"image_id", im.id}, {"category_id", category},
                {"bbox", {round3(box[0]), round3(box[1]), round3(box[2]), round3(box[3])}}, {"score", round3(score)}};
      r["segmentation"] = {{"size", {mask.h, mask.w}}, {"counts", coco::to_string(mask)}};
      results.push_back(std::move(r));
      ++made;
    };
    for (size_t index : gt.annotations_of_image(im.id)) {
      if (made >= per_image) break;
      const auto& a = gt.annotations()[index];
      if (a.iscrowd || a.segmentation.kind != coco::Segmentation::Kind::kPolygons || unit(rng) < 0.1) continue;
      const double quality = unit(rng);  // better-localised results score higher
      const double dx = noise(rng) * (1 - quality) * 0.15 * a.bbox[2], dy = noise(rng) * (1 - quality) * 0.15 * a.bbox[3];
      auto polygons = a.segmentation.polygons;
      for (auto& p : polygons) {
        for (size_t i = 0; i < p.size(); i += 2) p[i] += dx, p[i + 1] += dy;
      }
      const coco::Rle mask = coco::from_polygons(polygons, im.height, im.width);
      const std::array<double, 4> box{a.bbox[0] + dx, a.bbox[1] + dy, a.bbox[2] * (1 + 0.1 * noise(rng) * (1 - quality)),
                                      a.bbox[3] * (1 + 0.1 * noise(rng) * (1 - quality))};
      add(a.category_id, box, mask, 0.3 + 0.7 * quality * unit(rng));
      if (unit(rng) < 0.2 && made < per_image) add(a.category_id, box, mask, 0.5 * unit(rng));  // duplicate
    }
    const auto& cats = gt.categories();
    while (made < per_image) {
      const double w = 4 + unit(rng) * im.width * 0.5, h = 4 + unit(rng) * im.height * 0.5;
      const std::array<double, 4> box{unit(rng) * (im.width - w), unit(rng) * (im.height - h), w, h};
      const auto& ann = gt.annotations_of_image(im.id);
      // Half of the false positives on categories present in the image: they compete in matching.
      const int64_t category = !ann.empty() && unit(rng) < 0.5
                                   ? gt.annotations()[ann[size_t(unit(rng) * ann.size()) % ann.size()]].category_id
                                   : cats[size_t(unit(rng) * cats.size()) % cats.size()].id;
      add(category, box, coco::from_box(box, im.height, im.width), 0.4 * unit(rng));
    }
  }
  return results;
}

void write_json(const std::string& path, const json& value) {
  std::ofstream out(path);
  out << value.dump();
}

struct Timing {
  double load_gt = 0, load_results = 0, evaluate = 0, total = 0, peak_mib = 0;
  std::array<double, 12> stats{};
};

json to_json(const Timing& t) {
  return {{"load_gt", t.load_gt}, {"load_results", t.load_results}, {"evaluate", t.evaluate}, {"total", t.total},
          {"peak_mib", t.peak_mib}, {"stats", t.stats}};
}

Timing from_json(const json& j) {
  Timing t;
  t.load_gt = j["load_gt"], t.load_results = j["load_results"], t.evaluate = j["evaluate"], t.total = j["total"];
  t.peak_mib = j["peak_mib"];
  for (int i = 0; i < 12; ++i) t.stats[size_t(i)] = j["stats"][i];
  return t;
}

// In this process: called in a fresh child (--run-instseg), so that the peak RSS is instseg's own
// and no memory is inherited from the generator. `compressed`: results read as CompressedResults
// (masks decoded when evaluated), else read_results (all masks decoded at load).
Timing run_instseg(const std::string& gt_path, const std::string& results_path, evaluation::IouType type, int threads,
                   bool compressed) {
  Timing t;
  const auto start = std::chrono::steady_clock::now();
  const coco::Dataset gt = coco::Dataset::load(gt_path);
  t.load_gt = seconds_since(start);
  evaluation::EvalResult result;
  if (compressed) {
    const auto results = coco::CompressedResults::read(results_path, gt);
    t.load_results = seconds_since(start) - t.load_gt;
    result = evaluation::evaluate(gt, results, type, {threads});
  } else {
    const auto dets = coco::read_results(results_path, gt);
    t.load_results = seconds_since(start) - t.load_gt;
    result = evaluation::evaluate(gt, dets, type, {threads});
  }
  t.total = seconds_since(start);
  t.evaluate = t.total - t.load_gt - t.load_results;
  t.stats = result.stats;
  t.peak_mib = peak_rss_mib();
  return t;
}

// pycocotools in a child python process: COCO(gt), loadRes, evaluate, accumulate, summarize.
bool run_pycocotools(const std::string& python, const std::string& api_dir, const std::string& dir,
                     const std::string& gt_path, const std::string& results_path, const char* type, Timing& t) {
  const std::string script = dir + "/run_pycocotools.py", out = dir + "/pycocotools_out.json";
  std::ofstream(script) << R"(import sys, time, json, resource, contextlib, io
import numpy as np
if not hasattr(np, "float"): np.float = float  # cocoapi 2.0 uses np.float, removed in numpy 1.24
sys.path.insert(0, sys.argv[1])
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
t0 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[2]); t1 = time.perf_counter()
    dt = gt.loadRes(sys.argv[3]); t2 = time.perf_counter()
    e = COCOeval(gt, dt, sys.argv[4]); e.evaluate(); e.accumulate(); e.summarize()
t3 = time.perf_counter()
json.dump({"load_gt": t1 - t0, "load_results": t2 - t1, "evaluate": t3 - t2, "total": t3 - t0,
           "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "stats": list(e.stats)},
          open(sys.argv[5], "w"))
)";
  const std::string command = python + " " + script + " " + api_dir + " " + gt_path + " " + results_path + " " + type + " " + out;
  if (std::system(command.c_str()) != 0) return false;
  std::ifstream in(out);
  t = from_json(json::parse(in));
  return true;
}

// instseg in a child process started from this program's file (fork + exec: nothing inherited).
bool run_instseg_process(const std::string& dir, const std::string& gt_path, const std::string& results_path,
                         const char* type, int threads, bool compressed, Timing& t) {
  const std::string out = dir + "/instseg_out.json";
  const std::string command = "/proc/" + std::to_string(::getpid()) + "/exe --run-instseg " + gt_path + " " +
                              results_path + " " + type + " " + out + " " + (compressed ? "compressed" : "decoded") +
                              " --threads " + std::to_string(threads);
  if (std::system(command.c_str()) != 0) return false;
  std::ifstream in(out);
  t = from_json(json::parse(in));
  return true;
}

void print_row(const char* who, const Timing& t) {
  std::printf("  %-12s total %7.2f s  (load GT %5.2f, load results %5.2f, evaluate %6.2f)  peak RSS %6.0f MiB\n", who,
              t.total, t.load_gt, t.load_results, t.evaluate, t.peak_mib);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"COCO evaluation benchmark: instseg vs pycocotools on replicated tiny_coco val"};
  std::string pycocotools, python = "/usr/bin/python3", tmp;
  std::string val = std::string(INSTSEG_SOURCE_DIR) + "/datasets/tiny_coco/annotations/instances_val2017.json";
  int images = 5000, threads = 0;
  bool keep = false;
  std::vector<int> densities{20, 100};
  app.add_option("--pycocotools", pycocotools, "Folder holding a built pycocotools package (cocoapi's PythonAPI)");
  app.add_option("--python", python, "Python with numpy")->capture_default_str();
  app.add_option("--val", val, "tiny_coco val annotations")->capture_default_str();
  app.add_option("--images", images, "Images in the replicated ground truth")->capture_default_str();
  app.add_option("--per-image", densities, "Results per image, one run each")->capture_default_str();
  app.add_option("--threads", threads, "instseg threads (0 = all cores)")->capture_default_str();
  app.add_option("--tmp", tmp, "Work folder (default: a new folder under the system temp dir)");
  app.add_flag("--keep", keep, "Keep the generated files");
  std::vector<std::string> child;  // GT RESULTS TYPE OUT: time instseg only, write OUT
  app.add_option("--run-instseg", child)->expected(5)->group("");  // GT RESULTS TYPE OUT compressed|decoded
  CLI11_PARSE(app, argc, argv);
  try {
    if (!child.empty()) {
      const auto iou = child[2] == "segm" ? evaluation::IouType::kSegm : evaluation::IouType::kBbox;
      write_json(child[3], to_json(run_instseg(child[0], child[1], iou, threads, child[4] == "compressed")));
      return 0;
    }
    if (tmp.empty()) tmp = (fs::temp_directory_path() / ("instseg_coco_eval_bench_" + std::to_string(::getpid()))).string();
    fs::create_directories(tmp);
    std::ifstream in(val);
    const std::string gt_path = tmp + "/gt.json";
    write_json(gt_path, replicate_ground_truth(json::parse(in), images));
    const coco::Dataset gt = coco::Dataset::load(gt_path);
    std::printf("ground truth: %zu images, %zu annotations (%s)\n", gt.images().size(), gt.annotations().size(), gt_path.c_str());
    for (int per_image : densities) {
      const std::string results_path = tmp + "/results_" + std::to_string(per_image) + ".json";
      size_t count = 0;
      {  // the generator's document is freed before the timed runs
        const json results = make_results(gt, per_image, 1234u + uint32_t(per_image));
        write_json(results_path, results);
        count = results.size();
      }
      std::printf("\n%d results per image: %zu results, %.0f MiB file\n", per_image, count,
                  double(fs::file_size(results_path)) / (1 << 20));
      for (const char* type : {"segm", "bbox"}) {
        std::printf(" %s\n", type);
        std::fflush(stdout);
        // instseg twice: masks compressed until evaluated (CompressedResults), and all decoded at
        // load (read_results, what a caller holding std::vector<Detection> gets).
        Timing ours, decoded;
        if (!run_instseg_process(tmp, gt_path, results_path, type, threads, true, ours) ||
            !run_instseg_process(tmp, gt_path, results_path, type, threads, false, decoded)) {
          std::printf("  instseg failed to run\n");
          continue;
        }
        print_row("instseg", ours);
        print_row("  decoded", decoded);
        if (ours.stats != decoded.stats) std::printf("  compressed and decoded stats differ!\n");
        std::fflush(stdout);
        if (pycocotools.empty()) continue;
        Timing theirs;
        if (!run_pycocotools(python, pycocotools, tmp, gt_path, results_path, type, theirs)) {
          std::printf("  pycocotools failed to run\n");
          continue;
        }
        print_row("pycocotools", theirs);
        double max_diff = 0;
        for (int i = 0; i < 12; ++i) max_diff = std::max(max_diff, std::abs(ours.stats[size_t(i)] - theirs.stats[size_t(i)]));
        std::printf("  speed-up %.1fx total (%.1fx decoded), %.1fx evaluate; AP %.4f; max |stats difference| %.2g\n",
                    theirs.total / ours.total, theirs.total / decoded.total, theirs.evaluate / ours.evaluate, ours.stats[0],
                    max_diff);
      }
    }
    if (!keep) fs::remove_all(tmp);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
