#pragma once
// `instseg serve`: a loaded model answering HTTP requests (the contract: docs/serving.md).
// POST /v1/predict, GET /v1/model, /healthz, /metrics. One worker thread owns the model and runs
// queued requests in batches of one picture size; connection threads decode, check limits and
// wait for their answer. stop() drains: no new connections, every request received is answered.
#include <cstdint>
#include <memory>
#include <string>

#include "instseg/data/image_io.h"

namespace instseg::serve {

struct ServeOptions {
  std::string weights;            // a run folder, a .pth beside config.json, or a torchvision .pth
  std::string host = "127.0.0.1";  // loopback unless told otherwise: no accidental exposure
  int port = 8080;                // 0 = any free port (Server::bind returns it)
  int threads = 0;                // torch intra-op threads for the model; 0 = every core
  int max_batch = 4;              // images per forward pass; 2 cores gain little beyond 4
  int batch_wait_ms = 5;          // how long a batch waits for more pictures of its size
  int max_queue = 16;             // requests waiting for the model; more are refused with 503
  int64_t max_image_pixels = 25'000'000;   // width x height, checked from the header (413)
  int64_t max_body_bytes = 32 << 20;       // request body (413)
  int request_timeout_seconds = 60;        // queued longer than this: 504
  std::string token_file;         // first line = the bearer token; empty = no authentication
  std::string access_log;         // one JSON line per request: "" or "-" = stderr, "none" = off, else a file
  // predict's model settings (engine/model_factory.h ModelOverrides); unset (<0 / 0 / "") = the model's.
  double score_thresh = -1.0;
  int detections_per_image = 0;
  int min_size = 0;
  int max_size = 0;
  std::string mask_paste;
  // predict's --precision: the fused path's arithmetic, "fp32" or "bf16" (docs/precision.md).
  std::string precision = "fp32";
  // Throws ConfigError naming the option ("--max-batch must be in 1..64, got 0").
  void validate() const;
};

class Server {
 public:
  // Validates the options, reads the token file and loads the model (CheckpointError /
  // ConfigError / InputError naming the file).
  explicit Server(ServeOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port; returns the port (the one chosen when options.port is 0). ConfigError when
  // the address cannot be bound.
  int bind();
  // Serves until stop(); returns once every request received has been answered.
  void run();
  // Begins draining (thread-safe; not async-signal-safe: call it from a signal-waiting thread).
  // /healthz answers 503 "draining" from now on.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace instseg::serve
