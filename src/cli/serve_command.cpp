#include <CLI/CLI.hpp>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdio>
#include <thread>

#include "instseg/cli/commands.h"
#include "instseg/errors.h"
#include "instseg/serve/server.h"

namespace instseg::cli {

namespace {

// SIGTERM / SIGINT drain the server. The handler only writes one byte to a pipe (a self-pipe:
// async-signal-safe, and it works whichever thread the kernel picks, including threads libraries
// started before us); a watcher thread reads it and calls Server::stop(). Closing the write end
// ends the watcher when the server stops on its own.
int g_signal_pipe_write = -1;

extern "C" void on_drain_signal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  if (g_signal_pipe_write >= 0) (void)!write(g_signal_pipe_write, &byte, 1);
  errno = saved;
}

class SignalDrain {
 public:
  SignalDrain() {
    if (pipe(fds_) != 0) throw ConfigError(std::string("serve: cannot make a pipe: ") + std::strerror(errno));
    g_signal_pipe_write = fds_[1];
    struct sigaction action {};
    action.sa_handler = on_drain_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // reads and accepts elsewhere go on
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
  }
  void start(serve::Server& server) {
    thread_ = std::thread([this, &server] {
      unsigned char sig = 0;
      ssize_t n;
      while ((n = read(fds_[0], &sig, 1)) < 0 && errno == EINTR) {
      }
      if (n != 1) return;  // write end closed: the server stopped on its own
      std::fprintf(stderr, "serve: %s: finishing the requests received, then exiting\n",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT");
      server.stop();  // a second signal only writes another byte: the drain is not interrupted
    });
  }
  ~SignalDrain() {
    finish();
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    g_signal_pipe_write = -1;
    close(fds_[0]);
  }
  // Ends the watcher (before the server it would stop goes away).
  void finish() {
    if (fds_[1] >= 0) {
      g_signal_pipe_write = -1;
      close(fds_[1]);
      fds_[1] = -1;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  int fds_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<serve::ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "Serve a model over HTTP (POST /v1/predict)");
  cmd->add_option("--weights", o->weights, "a .pth checkpoint, or a run folder (its config.json and model_last.pth)")
      ->required();
  cmd->add_option("--host", o->host, "Address to listen on (0.0.0.0: every interface)")->capture_default_str();
  cmd->add_option("--port", o->port, "Port (0 = any free port; the line 'listening on ...' names it)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Intra-op threads of the model (0 = all cores)")->capture_default_str();
  cmd->add_option("--max-batch", o->max_batch, "Images of one size predicted together")->capture_default_str();
  cmd->add_option("--batch-wait-ms", o->batch_wait_ms, "How long a batch waits for more images")
      ->capture_default_str();
  cmd->add_option("--max-queue", o->max_queue, "Requests that may wait for the model; more get 503 + Retry-After")
      ->capture_default_str();
  cmd->add_option("--max-image-pixels", o->max_image_pixels,
                  "Refuse images of more pixels (413), from their header before decoding")
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", o->max_body_bytes, "Refuse larger request bodies (413)")->capture_default_str();
  cmd->add_option("--request-timeout-seconds", o->request_timeout_seconds,
                  "A request not answered within this gets 504")
      ->capture_default_str();
  cmd->add_option("--token-file", o->token_file,
                  "Require 'Authorization: Bearer <token>' (the file's first line) on every path but /healthz");
  cmd->add_option("--access-log", o->access_log, "One JSON line per request to this file ('-' = stderr, 'none' = off)")
      ->default_str("-");
  cmd->add_option("--score-thresh", o->score_thresh, "As predict: drop detections scoring at or below (default: the model's)");
  cmd->add_option("--detections-per-image", o->detections_per_image, "As predict (default: the model's)");
  cmd->add_option("--min-size", o->min_size, "As predict: shorter side after resizing (0 = the model's)")
      ->capture_default_str();
  cmd->add_option("--max-size", o->max_size, "As predict: longer side cap (0 = the model's)")->capture_default_str();
  cmd->add_option("--mask-paste", o->mask_paste, "As predict: torchvision or aligned (default: the model's)");
  cmd->add_option("--precision", o->precision,
                  "As predict: fp32, or bf16 (~3x faster on CPUs with AVX512-BF16 / AMX, outputs slightly "
                  "different: docs/precision.md)")
      ->capture_default_str();
  cmd->footer(
      "Prints 'listening on http://HOST:PORT' once ready. Endpoints:\n"
      "  POST /v1/predict[?score_thresh=X&mask_format=rle|polygon|none&max_detections=N]\n"
      "       body: image bytes (Content-Type image/jpeg|png|bmp|webp or application/octet-stream)\n"
      "       or multipart/form-data with a part named \"image\"; answers JSON whose results equal\n"
      "       `instseg predict`'s predictions.json entries for the same image and weights\n"
      "  GET  /v1/model    architecture, classes, input size, limits\n"
      "  GET  /healthz     {\"status\": \"ok\"}, 503 while draining\n"
      "  GET  /metrics     Prometheus text: requests, latency, queue depth, batch sizes\n"
      "Errors are JSON {\"error\": {\"status\", \"message\"}}: 400 bad image or query option, 401 token,\n"
      "413 body or image too large, 415 media type, 503 queue full (Retry-After), 504 timeout.\n"
      "SIGTERM / SIGINT: stop accepting connections, answer the requests received, exit 0.\n"
      "docs/serving.md: the JSON schema, limits, systemd and containers.\n\n"
      "Examples:\n"
      "  instseg serve --weights runs/first --port 8080\n"
      "  curl --data-binary @street.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8080/v1/predict\n"
      "  curl -F image=@street.jpg 'http://127.0.0.1:8080/v1/predict?mask_format=polygon&score_thresh=0.5'\n"
      "  instseg serve --weights maskrcnn_resnet50_fpn_coco.pth --host 0.0.0.0 --token-file /etc/instseg/token");
  cmd->callback([o] {
    o->validate();
    SignalDrain signals;  // before the model loads: a SIGTERM while loading still drains (at once)
    serve::Server server(*o);
    const int port = server.bind();
    std::printf("listening on http://%s:%d\n", o->host.c_str(), port);
    std::fflush(stdout);
    signals.start(server);
    server.run();
    signals.finish();
  });
}

}  // namespace instseg::cli
