// The HTTP side of `instseg serve`: routes, limits, authentication, the access log and draining.
#include "instseg/serve/server.h"

#include <httplib.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "instseg/engine/image_predictor.h"
#include "instseg/engine/model_factory.h"
#include "instseg/errors.h"
#include "instseg/modeling/layers/norm.h"
#include "instseg/modeling/roi_heads/paste_masks.h"
#include "instseg/ops/fused_conv.h"
#include "serve/batcher.h"
#include "serve/limits.h"
#include "serve/metrics.h"
#include "serve/response.h"

namespace instseg::serve {

namespace {

// Per connection thread: httplib runs pre-routing, the handler and post-routing of one request on
// the thread that read it.
struct RequestState {
  bool started = false;
  Clock::time_point start;
  int batch_size = 0;
};
thread_local RequestState t_request;

ModelOverrides overrides_for(const ServeOptions& o) {
  ModelOverrides overrides = overrides_from(o.score_thresh, o.detections_per_image, o.mask_paste, o.min_size,
                                            o.max_size, "serve: --mask-paste");
  overrides.precision = ops::inference_precision_named(o.precision, "serve: --precision");
  return overrides;
}

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

void set_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(error_json(status, message), "application/json");
}

}  // namespace

struct Server::Impl {
  explicit Impl(ServeOptions o) : options(std::move(o)), metrics(options.max_batch) {}

  ServeOptions options;
  std::string token;
  std::unique_ptr<ImagePredictor> predictor;
  Metrics metrics;
  std::unique_ptr<Batcher> batcher;
  httplib::Server http;
  std::string model_json;
  std::atomic<bool> draining{false}, run_started{false}, run_finished{false};
  int port = -1;
  std::mutex log_mutex;
  std::FILE* log = stderr;  // null: no access log
  bool log_owned = false;

  void predict(const httplib::Request& req, httplib::Response& res);
  void log_request(const httplib::Request& req, const httplib::Response& res);
  std::string describe_model() const;
};

std::string Server::Impl::describe_model() const {
  const LoadedModel& loaded = predictor->loaded();
  const MaskRcnnOptions& o = loaded.model->options();
  nlohmann::json classes = nlohmann::json::array();
  const auto& names = predictor->class_names();
  for (size_t label = 1; label < names.size(); ++label) {
    classes.push_back({{"id", predictor->category_id_of(label)}, {"name", names[label]}});
  }
  const nlohmann::json model = {
      {"weights", loaded.weights},
      {"config", loaded.config_file},
      {"num_classes", o.num_classes},
      {"classes", classes},
      {"architecture",
       {{"version", o.backbone.fpn_norm == NormKind::kNone ? "v1" : "v2"},
        {"backbone_depth", o.backbone.depth},
        {"norm", to_string(o.backbone.norm)}}},
      {"input", {{"min_size", o.transform.min_size.back()}, {"max_size", o.transform.max_size}}},
      {"score_thresh", o.roi_heads.score_thresh},
      {"detections_per_image", o.roi_heads.detections_per_img},
      {"mask_paste", to_string(o.mask_paste)},
      {"precision", options.precision},
      {"max_batch", options.max_batch},
      {"max_image_pixels", options.max_image_pixels},
      {"max_body_bytes", options.max_body_bytes}};
  return model.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

void Server::Impl::predict(const httplib::Request& req, httplib::Response& res) {
  struct Inflight {
    std::atomic<int64_t>& n;
    explicit Inflight(std::atomic<int64_t>& count) : n(count) { ++n; }
    ~Inflight() { --n; }
  } inflight(metrics.inflight);
  try {
    const PredictQuery query = parse_predict_query(req.params);
    std::string part;
    const bool multipart = req.is_multipart_form_data();
    const bool has_part = multipart && req.has_file("image");
    if (has_part) part = req.get_file_value("image").content;
    const std::string& bytes =
        image_bytes(req.get_header_value("Content-Type"), req.body, has_part ? &part : nullptr, multipart);
    check_image_pixels(bytes, options.max_image_pixels);  // from the header, before decoding
    torch::Tensor image;
    try {
      image = data::decode_image_rgb(std::vector<unsigned char>(bytes.begin(), bytes.end()), "request body",
                                     {options.max_image_pixels, "--max-image-pixels"});
    } catch (const InputError& e) {
      throw HttpError(400, e.what());
    }
    Batcher::Ticket ticket = batcher->submit(image);
    if (!ticket.result.valid()) {
      res.set_header("Retry-After", "1");
      throw HttpError(503, "busy: " + std::to_string(options.max_queue) +
                               " requests already wait for the model (--max-queue); retry later");
    }
    const auto timeout = std::chrono::seconds(options.request_timeout_seconds);
    if (ticket.result.wait_for(timeout) != std::future_status::ready) {
      ticket.abandoned->store(true);  // the worker skips it if it has not started it
      throw HttpError(504, "no answer within --request-timeout-seconds " +
                               std::to_string(options.request_timeout_seconds));
    }
    BatchResult result = ticket.result.get();
    t_request.batch_size = result.batch_size;
    if (!result.error.empty()) throw HttpError(500, "the model failed: " + result.error);
    PredictAnswer answer;
    answer.width = image.size(2);
    answer.height = image.size(1);
    answer.model_seconds = result.prediction.model_seconds;
    answer.queue_seconds = result.queue_seconds;
    answer.batch_size = result.batch_size;
    res.set_content(predict_json(answer, result.prediction.results, *predictor, query), "application/json");
  } catch (const HttpError& e) {
    set_error(res, e.status, e.what());
  }
}

void Server::Impl::log_request(const httplib::Request& req, const httplib::Response& res) {
  const double seconds =
      t_request.started ? std::chrono::duration<double>(Clock::now() - t_request.start).count() : 0.0;
  metrics.record_request(res.status, seconds);
  if (log) {
    const nlohmann::json line = {{"time", utc_now()},         {"remote", req.remote_addr},
                                 {"method", req.method},      {"path", req.path},
                                 {"status", res.status},      {"bytes_in", req.body.size()},
                                 {"bytes_out", res.body.size()}, {"seconds", seconds},
                                 {"batch", t_request.batch_size}};
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::lock_guard<std::mutex> lock(log_mutex);
    std::fwrite(text.data(), 1, text.size(), log);
    std::fflush(log);
  }
  t_request = RequestState{};
}

Server::Server(ServeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& s = *impl_;
  s.options.validate();
  if (!s.options.token_file.empty()) s.token = read_token_file(s.options.token_file);
  if (s.options.access_log == "none") {
    s.log = nullptr;
  } else if (!s.options.access_log.empty() && s.options.access_log != "-") {
    s.log = std::fopen(s.options.access_log.c_str(), "a");
    if (!s.log) throw ConfigError("serve: --access-log " + s.options.access_log + ": cannot be opened for appending");
    s.log_owned = true;
  }
  torch::set_num_threads(s.options.threads > 0 ? s.options.threads
                                               : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  s.predictor = std::make_unique<ImagePredictor>(load_model(s.options.weights, overrides_for(s.options)));
  s.model_json = s.describe_model();
  s.batcher = std::make_unique<Batcher>(*s.predictor, s.options.max_batch,
                                        std::chrono::milliseconds(s.options.batch_wait_ms), s.options.max_queue,
                                        [&s](int n) { s.metrics.record_batch(n); });

  httplib::Server& http = s.http;
  // Enough connection threads for every queued request plus a batch being predicted and a few for
  // /healthz and /metrics; further connections wait in the pool's accept queue (sockets only).
  const size_t pool = static_cast<size_t>(s.options.max_queue + s.options.max_batch + 8);
  http.new_task_queue = [pool] { return new httplib::ThreadPool(pool); };
  http.set_payload_max_length(static_cast<size_t>(s.options.max_body_bytes));
  http.set_keep_alive_timeout(2);  // an idle kept-alive connection delays draining at most this long

  http.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    t_request.started = true;
    t_request.start = Clock::now();
    if (!s.token.empty() && req.path != "/healthz") {
      try {
        check_bearer_token(req.get_header_value("Authorization"), s.token);
      } catch (const HttpError& e) {
        res.set_header("WWW-Authenticate", "Bearer");
        set_error(res, e.status, e.what());
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.Post("/v1/predict", [&s](const httplib::Request& req, httplib::Response& res) { s.predict(req, res); });
  http.Get("/v1/model", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.model_json, "application/json");
  });
  http.Get("/healthz", [&s](const httplib::Request&, httplib::Response& res) {
    if (s.draining) {
      res.status = 503;
      res.set_content("{\"status\":\"draining\"}\n", "application/json");
    } else {
      res.set_content("{\"status\":\"ok\"}\n", "application/json");
    }
  });
  http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.metrics.text(s.batcher->depth()), "text/plain; version=0.0.4");
  });
  // Known paths with the wrong method: 405 naming the allowed one.
  auto wrong_method = [](const std::string& allowed) {
    return [allowed](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allowed);
      set_error(res, 405, req.method + " " + req.path + ": method not allowed (use " + allowed + ")");
    };
  };
  http.Get("/v1/predict", wrong_method("POST"));
  http.Put("/v1/predict", wrong_method("POST"));
  http.Delete("/v1/predict", wrong_method("POST"));
  for (const char* path : {"/v1/model", "/healthz", "/metrics"}) {
    http.Post(path, wrong_method("GET"));
    http.Put(path, wrong_method("GET"));
    http.Delete(path, wrong_method("GET"));
  }
  // Errors httplib answers itself (body over the limit, unknown path, malformed request) get the
  // same JSON body; answers that already have one keep it.
  http.set_error_handler(httplib::Server::HandlerWithResponse([&s](const httplib::Request& req,
                                                                   httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    if (res.status == 413) {
      const std::string length = req.get_header_value("Content-Length");
      message = "request body" + (length.empty() ? std::string() : " of " + length + " bytes") +
                " is over --max-body-bytes " + std::to_string(s.options.max_body_bytes);
    } else if (res.status == 404) {
      message = "no such path: " + req.path + " (POST /v1/predict, GET /v1/model, /healthz, /metrics)";
    } else {
      message = "HTTP error " + std::to_string(res.status) + " (malformed or refused request)";
    }
    set_error(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string message = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      message += std::string(": ") + e.what();
    } catch (...) {
    }
    set_error(res, 500, message);
  });
  // Counted and logged when the answer is final and before it is written (the post-routing
  // handler; httplib's logger runs after the write, so a client could see its answer before the
  // metrics count it, and a failed write would not be logged at all).
  http.set_post_routing_handler([&s](const httplib::Request& req, httplib::Response& res) { s.log_request(req, res); });
}

Server::~Server() {
  stop();
  if (impl_->batcher) impl_->batcher.reset();  // answers what is queued, joins the worker
  if (impl_->log_owned) std::fclose(impl_->log);
}

int Server::bind() {
  Impl& s = *impl_;
  const int port = s.options.port == 0 ? s.http.bind_to_any_port(s.options.host)
                                       : (s.http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1);
  if (port < 0) {
    throw ConfigError("serve: cannot listen on " + s.options.host + ":" + std::to_string(s.options.port) +
                      " (address in use, or not an address of this machine)");
  }
  s.port = port;
  return port;
}

void Server::run() {
  Impl& s = *impl_;
  if (s.port < 0) bind();
  s.run_started = true;
  if (!s.draining) s.http.listen_after_bind();  // returns after stop(), once every connection is served
  s.run_finished = true;
  s.batcher->stop();
}

void Server::stop() {
  Impl& s = *impl_;
  s.draining = true;
  if (s.batcher) s.batcher->drain();  // what is queued runs now, without waiting for fuller batches
  // stop() before listen_after_bind has started would be lost: wait until it runs (or ended).
  while (s.run_started && !s.run_finished && !s.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.http.stop();
}

}  // namespace instseg::serve
