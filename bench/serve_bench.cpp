// Serving speed: `instseg serve` under concurrent HTTP load against sequential `instseg predict` on
// the same images, weights and thread count, measured in one run (docs/benchmarks.md, "Serving").
//
//   throughput (default): tiny_coco val images POSTed to /v1/predict by 1, 4 and 16 client threads;
//     images/s and p50/p99 latency per level, beside `instseg predict` over the same images.
//   --soak-seconds S: one pass over the images (warm-up), then S seconds of steady load; the
//     server's VmRSS sampled every --rss-every seconds; growth from the first minute's level
//     (its highest sample) to the end (target < 5%).
//   --video-frames F: a clip of F frames made from the same images (OpenCV VideoWriter), then
//     `instseg predict --input clip.mp4` timed end to end (frames/s).
//
// Every answer must be a 200 whose JSON has a "results" array; anything else is counted and
// printed, and the exit code is 1. Answers at concurrency 1 are also compared with predict's
// predictions.json for the same image (the contract: equal for a request that ran alone).
//
// usage: serve_bench [--instseg PATH] [--weights W.pth] [--images 16] [--threads 2]
//                    [--levels 1,4,16] [--requests 16] [--min-size 800] [--max-size 1333]
//                    [--no-throughput] [--soak-seconds 0] [--soak-concurrency 2] [--rss-every 5]
//                    [--no-soak-warm-up]
//                    [--video-frames 0] [--serve-args "..."]
//   Without --weights a seeded random-init torchvision maskrcnn_resnet50_fpn checkpoint is made
//   with bench/make_checkpoint.py (as predict_bench does).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>
#include <thread>

#include "bench_support.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using instseg::bench::run_capture;

namespace {

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The machine as docs/benchmarks.md names it: /proc/cpuinfo's model name and the core count.
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// The 1-minute load average: the machine is shared, so every figure is printed beside it.
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five;
  in >> one >> five;
  return one + " (1 min), " + five + " (5 min)";
}

// Resident set size of a process in MB (VmRSS of /proc/PID/status); -1 when it is gone.
double rss_mb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1.0;
}

// Nearest-rank percentile: with 16 samples p99 is the slowest request, said so in the docs.
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * v.size()));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `instseg serve` as a child process: started with --port 0, its port read from the one line it
// prints when listening; stopped with SIGTERM (the exit code is reported: the contract says 0).
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& argv, const fs::path& log) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      const int err = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) dup2(err, STDERR_FILENO);
      close(out[0]);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(out[1]);
    stdout_ = out[0];
    // Loading a ResNet-50 checkpoint on a busy 2-core machine can take a minute.
    const auto start = Clock::now();
    std::string seen;
    while (seconds_since(start) < 300) {
      pollfd p{stdout_, POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) continue;
      char buf[512];
      const ssize_t n = read(stdout_, buf, sizeof buf);
      if (n <= 0) break;
      seen.append(buf, n);
      const auto at = seen.find("listening on http://");
      const auto eol = at == std::string::npos ? at : seen.find('\n', at);
      if (eol != std::string::npos) {
        const std::string address = seen.substr(at + 20, eol - at - 20);  // HOST:PORT
        host_ = address.substr(0, address.rfind(':'));
        port_ = std::stoi(address.substr(address.rfind(':') + 1));
        startup_seconds_ = seconds_since(start);
        return;
      }
    }
    stop();
    throw std::runtime_error("the server did not say where it listens (its log: " + log.string() + "); stdout: " + seen);
  }
  ~ServerProcess() {
    if (pid_ > 0) stop();
  }
  // SIGTERM, then up to 60 s for it to drain and exit; returns the exit code (-signal if killed).
  int stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    const auto start = Clock::now();
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (seconds_since(start) > 60) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    pid_ = -1;
    if (stdout_ >= 0) close(stdout_);
    stdout_ = -1;
    return exit_code_;
  }
  pid_t pid() const { return pid_; }
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  double startup_seconds() const { return startup_seconds_; }

 private:
  pid_t pid_ = -1;
  int stdout_ = -1;
  std::string host_;
  int port_ = 0;
  double startup_seconds_ = 0;
  int exit_code_ = 0;
};

struct Image {
  std::string file_name;
  std::string bytes;
};

// Answers that were not a 200 with results: counted, the first few printed in full.
struct Errors {
  std::mutex mutex;
  std::vector<std::string> messages;
  void add(std::string m) {
    std::lock_guard<std::mutex> lock(mutex);
    messages.push_back(std::move(m));
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mutex);
    return messages.size();
  }
};

struct Answer {
  size_t image = 0;
  double seconds = 0;
  int batch_size = 0;
  json results;  // null when the answer was an error
};

// One POST /v1/predict; checks the answer is a 200 with a "results" array.
Answer post_image(httplib::Client& client, const std::vector<Image>& images, size_t index, Errors& errors) {
  Answer answer;
  answer.image = index;
  const auto start = Clock::now();
  auto res = client.Post("/v1/predict", images[index].bytes, "image/jpeg");
  answer.seconds = seconds_since(start);
  const std::string what = images[index].file_name + ": ";
  if (!res) {
    errors.add(what + "no answer (" + httplib::to_string(res.error()) + ")");
    return answer;
  }
  if (res->status != 200) {
    errors.add(what + "status " + std::to_string(res->status) + ": " + res->body.substr(0, 300));
    return answer;
  }
  try {
    auto body = json::parse(res->body);
    if (!body.contains("results") || !body["results"].is_array()) throw std::runtime_error("no results array");
    answer.batch_size = body.value("batch_size", 0);
    answer.results = std::move(body["results"]);
  } catch (const std::exception& e) {
    errors.add(what + "200 but " + e.what() + ": " + res->body.substr(0, 300));
  }
  return answer;
}

httplib::Client make_client(const ServerProcess& server) {
  httplib::Client client(server.host(), server.port());
  client.set_keep_alive(true);
  client.set_read_timeout(900, 0);  // a request queued behind 15 others on a busy machine
  client.set_write_timeout(60, 0);
  return client;
}

// `concurrency` client threads, each with its own connection, POST the next image (round robin
// over the set) until `requests` were sent. Returns every answer; wall time in `wall`.
std::vector<Answer> run_level(const ServerProcess& server, const std::vector<Image>& images, int concurrency,
                              int requests, Errors& errors, double& wall) {
  std::atomic<int> next{0};
  std::mutex mutex;
  std::vector<Answer> answers;
  const auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      auto client = make_client(server);
      for (int i = next++; i < requests; i = next++) {
        auto answer = post_image(client, images, static_cast<size_t>(i) % images.size(), errors);
        std::lock_guard<std::mutex> lock(mutex);
        answers.push_back(std::move(answer));
      }
    });
  }
  for (auto& t : clients) t.join();
  wall = seconds_since(start);
  return answers;
}

// Runs a command with its output in `log`; returns wall seconds; throws when it fails.
double timed_command(const std::string& command, const fs::path& log) {
  const auto start = Clock::now();
  const int rc = std::system((command + " > " + shell_quote(log.string()) + " 2>&1").c_str());
  const double wall = seconds_since(start);
  if (rc != 0) throw std::runtime_error("failed (" + std::to_string(rc) + "): " + command + "; see " + log.string());
  return wall;
}

// A result as predict writes it, without the per-file fields the server does not send.
json comparable(json r) {
  r.erase("image_id");
  r.erase("file_name");
  r.erase("category");
  return r;
}

struct Settings {
  std::string program, weights;
  int threads = 2, min_size = 800, max_size = 1333;
  std::string serve_args;
  fs::path work;
};

std::string predict_command(const Settings& s, const std::vector<std::string>& inputs, const fs::path& out) {
  std::string c = shell_quote(s.program) + " predict --weights " + shell_quote(s.weights) + " --out " +
                  shell_quote(out.string()) + " --threads " + std::to_string(s.threads) + " --min-size " +
                  std::to_string(s.min_size) + " --max-size " + std::to_string(s.max_size) + " --no-overlays --input";
  for (const auto& i : inputs) c += " " + shell_quote(i);
  return c;
}

std::vector<std::string> serve_argv(const Settings& s) {
  std::vector<std::string> argv{s.program, "serve", "--weights", s.weights, "--port", "0",
                                "--threads", std::to_string(s.threads), "--min-size", std::to_string(s.min_size),
                                "--max-size", std::to_string(s.max_size), "--access-log", "none"};
  std::istringstream extra(s.serve_args);
  for (std::string a; extra >> a;) argv.push_back(a);
  return argv;
}

// Sequential predict over the images, then the server at each concurrency level.
int throughput(const Settings& s, const std::vector<Image>& images, const std::vector<std::string>& paths,
               const std::vector<int>& levels, int requests) {
  // predict on one image = process start + model load + one (cold) image; on all N: the same plus
  // N - 1 warm images, so the difference is predict's steady per-image time.
  const double one = timed_command(predict_command(s, {paths[0]}, s.work / "predict_one"), s.work / "predict_one.log");
  const double all = timed_command(predict_command(s, paths, s.work / "predict_all"), s.work / "predict_all.log");
  const double predict_steady = (all - one) / static_cast<double>(paths.size() - 1);
  std::printf("instseg predict, sequential: %zu images in %.1f s wall (1 image: %.1f s: start + load + first)\n",
              paths.size(), all, one);
  std::printf("  steady: %.3f s/image = %.3f images/s; with start and load: %.3f images/s\n", predict_steady,
              1.0 / predict_steady, paths.size() / all);

  // predict's results per file name, in its order, to compare answers that ran alone.
  std::map<std::string, std::vector<json>> expected;
  for (auto& r : json::parse(read_file(s.work / "predict_all" / "predictions.json")))
    expected[r.at("file_name").get<std::string>()].push_back(comparable(r));

  Errors errors;
  ServerProcess server(serve_argv(s), s.work / "serve.log");
  std::printf("instseg serve: listening on %s:%d after %.1f s (process start + model load)\n", server.host().c_str(),
              server.port(), server.startup_seconds());
  {
    auto client = make_client(server);
    post_image(client, images, 0, errors);  // warm-up: first-call allocations, oneDNN primitives
  }
  std::printf("\n| concurrency | requests | wall s | images/s | vs predict steady | p50 s | p99 s | mean batch | errors |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  size_t compared = 0, equal = 0, batched = 0, batched_equal = 0;
  for (int c : levels) {
    const size_t errors_before = errors.count();
    double wall = 0;
    auto answers = run_level(server, images, c, requests, errors, wall);
    std::vector<double> latency;
    double batch_sum = 0;
    for (const auto& a : answers) {
      latency.push_back(a.seconds);
      batch_sum += a.batch_size;
      if (a.results.is_null()) continue;
      // A request that ran alone: the same numbers as predict's predictions.json. In a batch of
      // several they may differ in the last digits (counted, not an error).
      std::vector<json> got;
      for (const auto& r : a.results) got.push_back(comparable(r));
      const bool same = got == expected[images[a.image].file_name];
      if (a.batch_size == 1) {
        ++compared;
        equal += same;
      } else {
        ++batched;
        batched_equal += same;
      }
    }
    const double ips = answers.size() / wall;
    std::printf("| %d | %zu | %.1f | %.3f | %.2fx | %.2f | %.2f | %.2f | %zu |\n", c, answers.size(), wall, ips,
                ips * predict_steady, percentile(latency, 50), percentile(latency, 99),
                answers.empty() ? 0.0 : batch_sum / answers.size(), errors.count() - errors_before);
    std::fflush(stdout);
  }
  const double peak = rss_mb(server.pid());
  const int code = server.stop();
  std::printf("\nanswers of batch size 1 equal to predict's results for the image: %zu of %zu\n", equal, compared);
  std::printf("answers of larger batches equal to predict's (may differ, not an error): %zu of %zu\n", batched_equal,
              batched);
  std::printf("server RSS at the end %.0f MB; exit code after SIGTERM: %d\n", peak, code);
  for (size_t i = 0; i < errors.messages.size() && i < 10; ++i) std::printf("error: %s\n", errors.messages[i].c_str());
  std::printf("errors: %zu\n", errors.messages.size());
  return errors.messages.empty() && code == 0 && equal == compared ? 0 : 1;
}

// Steady load for `seconds`; VmRSS sampled every `every` seconds.
int soak(const Settings& s, const std::vector<Image>& images, double seconds, int concurrency, double every,
         bool warm_up) {
  Errors errors;
  ServerProcess server(serve_argv(s), s.work / "serve_soak.log");
  if (warm_up) {
    // Every picture size once, at the soak's concurrency, before the clock starts: the first
    // sighting of a size (and of a batch of it) grows the allocator's pools; without this pass the
    // first minute measures those, not a leak.
    double wall = 0;
    run_level(server, images, concurrency, static_cast<int>(images.size()), errors, wall);
    std::printf("soak warm-up: %zu requests in %.0f s, RSS %.0f MB\n", images.size(), wall, rss_mb(server.pid()));
  }
  std::atomic<bool> stop{false};
  std::atomic<long> done{0};
  std::vector<std::thread> clients;
  const auto start = Clock::now();
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&, c] {
      auto client = make_client(server);
      for (size_t i = c; !stop; i += concurrency) {
        post_image(client, images, i % images.size(), errors);
        ++done;
      }
    });
  }
  std::vector<std::pair<double, double>> samples;  // (scheduled second, RSS MB)
  std::printf("soak: %d clients, %.0f s, RSS every %.0f s\n  t s   RSS MB  requests\n", concurrency, seconds, every);
  for (double t = 0;; t += every) {
    const double wait = t - seconds_since(start);
    if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    samples.emplace_back(t, rss_mb(server.pid()));  // on the schedule's time: t = 60 is in the first minute
    std::printf("  %5.0f %7.0f %6ld\n", samples.back().first, samples.back().second, done.load());
    std::fflush(stdout);
    if (t >= seconds) break;
  }
  stop = true;
  for (auto& t : clients) t.join();
  const double wall = seconds_since(start);
  const int code = server.stop();
  // The first minute's level: its highest sample (the model loaded, every image size seen once).
  double first = 0;
  for (const auto& [t, mb] : samples)
    if (t <= 60) first = std::max(first, mb);
  double highest = 0;
  for (const auto& sample : samples) highest = std::max(highest, sample.second);
  const double end = samples.back().second;
  const double growth = 100.0 * (end - first) / first;
  std::printf("requests: %ld in %.0f s (%.3f images/s); errors: %zu\n", done.load(), wall, done / wall,
              errors.messages.size());
  std::printf("RSS: first minute %.0f MB, end %.0f MB, highest %.0f MB: growth %+.2f%% (target < 5%%): %s\n", first,
              end, highest, growth, growth < 5.0 ? "met" : "NOT met");
  std::printf("exit code after SIGTERM: %d\n", code);
  for (size_t i = 0; i < errors.messages.size() && i < 10; ++i) std::printf("error: %s\n", errors.messages[i].c_str());
  return errors.messages.empty() && code == 0 && growth < 5.0 ? 0 : 1;
}

// A clip of `frames` 640x480 frames at 10 frames/s made from the images (each held for a few
// frames, shifted a little per frame, as a panning camera), then predict on it end to end.
int video(const Settings& s, const std::vector<std::string>& paths, int frames) {
  const fs::path clip = s.work / "clip.mp4";
  const cv::Size size(640, 480);
  cv::VideoWriter writer(clip.string(), cv::VideoWriter::fourcc('m', 'p', '4', 'v'), 10.0, size);
  if (!writer.isOpened()) throw std::runtime_error("OpenCV cannot write " + clip.string());
  for (int f = 0; f < frames; ++f) {
    cv::Mat image = cv::imread(paths[(f / 5) % paths.size()]), frame;
    cv::resize(image, frame, cv::Size(size.width + 40, size.height + 40));
    writer.write(frame(cv::Rect((f % 5) * 8, (f % 5) * 8, size.width, size.height)).clone());
  }
  writer.release();
  const fs::path out = s.work / "video_out";
  std::string command = shell_quote(s.program) + " predict --weights " + shell_quote(s.weights) + " --out " +
                        shell_quote(out.string()) + " --threads " + std::to_string(s.threads) + " --min-size " +
                        std::to_string(s.min_size) + " --max-size " + std::to_string(s.max_size) + " --input " +
                        shell_quote(clip.string());
  const double wall = timed_command(command, s.work / "video.log");
  // The same process on one still image: start + load + one frame, to separate the steady rate.
  const double one = timed_command(predict_command(s, {paths[0]}, s.work / "video_one"), s.work / "video_one.log");
  std::printf("video: %d frames %dx%d (%s), predict --input clip.mp4: %.1f s wall\n", frames, size.width,
              size.height, clip.c_str(), wall);
  std::printf("  end to end %.3f frames/s; without start + load (%.1f s incl. one image): %.3f frames/s\n",
              frames / wall, one, (frames - 1) / (wall - one));
  // What it wrote: one predictions.jsonl line per frame, an annotated video of as many frames.
  int status = 0;
  for (const auto& entry : fs::recursive_directory_iterator(out)) {
    const auto ext = entry.path().extension().string();
    if (ext == ".jsonl") {
      std::ifstream in(entry.path());
      long lines = 0;
      for (std::string line; std::getline(in, line);) lines += !line.empty();
      std::printf("  %s: %ld lines\n", entry.path().filename().c_str(), lines);
      if (lines != frames) status = 1;
    } else if (ext == ".mp4" || ext == ".avi" || ext == ".mkv") {
      cv::VideoCapture capture(entry.path().string());
      long count = 0;
      for (cv::Mat f; capture.read(f);) ++count;
      std::printf("  %s: %ld frames\n", entry.path().filename().c_str(), count);
      if (count != frames) status = 1;
    }
  }
  return status;
}

std::vector<int> parse_levels(const std::string& text) {
  std::vector<int> levels;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) levels.push_back(std::stoi(item));
  return levels;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"instseg serve under load vs sequential instseg predict; soak; video frames/s"};
  Settings s;
  s.program = INSTSEG_PROGRAM;
  int images = 16, requests = 16, soak_concurrency = 2, video_frames = 0;
  double soak_seconds = 0, rss_every = 5;
  bool no_throughput = false, no_soak_warm_up = false;
  std::string levels = "1,4,16", variant = "v1";
  // The server's own default is 60 s; at concurrency 16 on a busy 2-core machine a request can
  // wait longer than that behind the others, which would measure the timeout, not the server.
  s.serve_args = "--request-timeout-seconds 900";
  app.add_option("--instseg", s.program, "The instseg program")->capture_default_str();
  app.add_option("--weights", s.weights, "Checkpoint; default: a seeded random-init torchvision one");
  app.add_option("--variant", variant, "v1 or v2 (for the generated checkpoint)")->capture_default_str();
  app.add_option("--images", images, "tiny_coco val images (sorted by name)")->capture_default_str();
  app.add_option("--threads", s.threads, "Intra-op threads, predict and serve alike")->capture_default_str();
  app.add_option("--min-size", s.min_size, "Shorter side resized to")->capture_default_str();
  app.add_option("--max-size", s.max_size, "Longer side cap")->capture_default_str();
  app.add_option("--levels", levels, "Client concurrency levels")->capture_default_str();
  app.add_option("--requests", requests, "Requests per level")->capture_default_str();
  app.add_flag("--no-throughput", no_throughput, "Skip predict vs serve throughput");
  app.add_option("--soak-seconds", soak_seconds, "Soak this long (the docs' run: 300)")->capture_default_str();
  app.add_option("--soak-concurrency", soak_concurrency, "Clients during the soak")->capture_default_str();
  app.add_flag("--no-soak-warm-up", no_soak_warm_up, "Start the soak's clock at once, not after one pass over the images");
  app.add_option("--rss-every", rss_every, "Seconds between RSS samples")->capture_default_str();
  app.add_option("--video-frames", video_frames, "Frames of the generated clip (0: no video run)")->capture_default_str();
  app.add_option("--serve-args", s.serve_args, "More options for instseg serve")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string source = INSTSEG_SOURCE_DIR;
  if (s.weights.empty()) {
    s.weights = instseg::bench::bench_checkpoint(source, variant);
  }
  std::vector<std::string> paths;
  for (const auto& entry : fs::directory_iterator(source + "/datasets/tiny_coco/val2017"))
    if (entry.path().extension() == ".jpg") paths.push_back(entry.path().string());
  std::sort(paths.begin(), paths.end());
  paths.resize(std::min<size_t>(paths.size(), static_cast<size_t>(std::max(2, images))));
  std::vector<Image> loaded;
  for (const auto& p : paths) loaded.push_back({fs::path(p).filename().string(), read_file(p)});

  s.work = fs::temp_directory_path() / ("instseg_serve_bench_" + std::to_string(getpid()));
  fs::create_directories(s.work);
  std::printf("CPU: %s, %u cores; load average %s\n", cpu_model().c_str(), std::thread::hardware_concurrency(),
              load_average().c_str());
  std::printf("weights: %s; images: %zu tiny_coco val; min_size %d, max_size %d; threads %d; serve %s\n",
              s.weights.c_str(), paths.size(), s.min_size, s.max_size, s.threads, s.serve_args.c_str());
  std::fflush(stdout);
  int status = 0;
  try {
    if (!no_throughput) status |= throughput(s, loaded, paths, parse_levels(levels), requests);
    if (soak_seconds > 0) status |= soak(s, loaded, soak_seconds, soak_concurrency, rss_every, !no_soak_warm_up);
    if (video_frames > 0) status |= video(s, paths, video_frames);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "serve_bench: %s\n", e.what());
    status = 2;
  }
  std::printf("load average at the end %s; outputs and logs in %s\n", load_average().c_str(), s.work.c_str());
  return status;
}
