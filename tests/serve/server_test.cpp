// `instseg serve` run as a process and asked over HTTP (httplib::Client, raw sockets): answers
// equal `instseg predict`'s results for the same images, concurrent clients batched and answered
// correctly, every refusal of the contract (docs/serving.md) with its status while
// the server keeps serving, a client dropping mid-upload, SIGTERM draining, /metrics, /v1/model and
// the bearer token. r18.pth (tests/reference/interop_cli.py) at 160 / 256 px keeps each request
// at a fraction of a second on 2 cores.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "cli/cli_support.h"
#include "instseg/coco/rle.h"
#include "instseg/io/mask_polygons.h"
#include "serve/server_process.h"
#include "support/reference.h"

namespace instseg {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using testing::ServerProcess;

const std::vector<std::string> kModelArgs = {"--min-size", "160", "--max-size", "256", "--threads", "2"};

std::string weights() { return testing::reference_dir("interop_cli") + "/r18.pth"; }

// A picture of a request: its name (as predict's file_name) and encoded bytes.
struct Picture {
  std::string name, bytes;
};

// The results of an answer (or of predictions.json for one file) as text lines, each the
// ResultsWriter's entry without "file_name" / the answer's "category", and without "image_id"
// (predict numbers its inputs 1, 2, ...; the server has one image per request, id 1).
std::vector<std::string> answer_lines(const std::string& body) {
  std::vector<std::string> lines;
  std::istringstream in(body);
  std::string line;
  std::getline(in, line);  // the head: {"batch_size":...,"results":[
  static const std::regex category(R"(^\{"category":"[^"]*",)"), image_id(R"("image_id":\d+,)");
  while (std::getline(in, line)) {
    if (line == "]}" || line.empty()) continue;
    if (line.back() == ',') line.pop_back();
    lines.push_back(std::regex_replace(std::regex_replace(line, category, "{"), image_id, ""));
  }
  return lines;
}
std::map<std::string, std::vector<std::string>> predictions_by_file(const std::string& text) {
  std::map<std::string, std::vector<std::string>> by_file;
  std::istringstream in(text);
  std::string line;
  static const std::regex file_name(R"(,"file_name":"([^"]*)\")"), image_id(R"("image_id":\d+,)");
  while (std::getline(in, line)) {
    if (line == "[" || line == "]" || line.empty()) continue;
    if (line.back() == ',') line.pop_back();
    std::smatch m;
    if (!std::regex_search(line, m, file_name)) continue;
    const std::string name = m[1];
    by_file[name].push_back(std::regex_replace(std::regex_replace(line, file_name, ""), image_id, ""));
  }
  return by_file;
}

// Equal lines, reported by the first that differs (an answer is ~100 lines of RLE).
void expect_same_lines(const std::vector<std::string>& got, const std::vector<std::string>& expected,
                       const std::string& what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != expected[i]) {
      ADD_FAILURE() << what << ": result " << i << " differs:\n  " << got[i].substr(0, 200) << "\n  "
                    << expected[i].substr(0, 200);
      return;
    }
  }
}

// Sends `request` on a raw connection to 127.0.0.1:port; `hang_up` closes right after it (a client
// dropping mid-upload), else the answer is read until the server closes. Returns what was read.
std::string raw_exchange(int port, const std::string& request, bool hang_up) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()) && !hang_up) {
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) answer.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return answer;
}

httplib::Result post_image(httplib::Client& client, const Picture& p, const std::string& query = "",
                           const httplib::Headers& headers = {}) {
  return client.Post(("/v1/predict" + query).c_str(), headers, p.bytes, "image/png");
}

json metrics_values(httplib::Client& client) {
  // "name{labels} value" lines as {"name{labels}": value}.
  const auto res = client.Get("/metrics");
  json values = json::object();
  if (!res || res->status != 200) return values;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    values[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return values;
}

double value_or_zero(const json& m, const std::string& key) { return m.contains(key) ? m[key].get<double>() : 0.0; }

// Results of a batched answer against the same picture's answer alone. Batched kernels round
// differently: measured on this model, scores move by ~1e-6 and boxes by ~6e-5 px. Compared in
// order with 100x that margin: same count and categories, score within 1e-4, box within 0.01 px,
// masks of IoU >= 0.9 (or both empty: r18's narrow heads give some empty masks).
void expect_close_answers(const std::string& alone, const std::string& batched, const std::string& what) {
  const json ra = json::parse(alone)["results"], rb = json::parse(batched)["results"];
  ASSERT_EQ(ra.size(), rb.size()) << what;
  for (size_t i = 0; i < ra.size(); ++i) {
    const std::string at = what + " result " + std::to_string(i);
    ASSERT_EQ(ra[i]["category_id"], rb[i]["category_id"]) << at;
    EXPECT_NEAR(ra[i]["score"].get<double>(), rb[i]["score"].get<double>(), 1e-4) << at;
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(ra[i]["bbox"][k].get<double>(), rb[i]["bbox"][k].get<double>(), 0.01) << at;
    const auto& sa = ra[i]["segmentation"];
    const auto& sb = rb[i]["segmentation"];
    const uint32_t h = sa["size"][0], w = sa["size"][1];
    const auto ma = coco::from_string(sa["counts"].get<std::string>(), h, w);
    const auto mb = coco::from_string(sb["counts"].get<std::string>(), h, w);
    if (coco::area(ma) == 0 && coco::area(mb) == 0) continue;
    EXPECT_GE(coco::iou(ma, mb, false), 0.9) << at;
  }
}

// One server for most tests (a second and a third for the token and queue limits, and SIGTERM).
class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("instseg_serve_test_" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    // Two pictures of one size (batched together) and one portrait (a different padded size).
    pictures_ = new std::vector<Picture>;
    const std::vector<std::pair<std::string, std::string>> sources = {
        {"a.png", "000000017627.jpg"}, {"b.png", "000000025560.jpg"}, {"c.png", "000000006818.jpg"}};
    for (const auto& [name, source] : sources) {
      cv::Mat image = cv::imread(testing::source_path("datasets/tiny_coco/val2017/" + source), cv::IMREAD_COLOR);
      cv::Mat half;
      cv::resize(image, half, cv::Size(image.cols / 2, image.rows / 2), 0, 0, cv::INTER_AREA);
      const std::string path = (*dir_ / name).string();
      cv::imwrite(path, half);
      pictures_->push_back({name, testing::read_file_bytes(path)});
    }
    std::vector<std::string> args = {"--weights", weights(), "--max-batch", "4", "--batch-wait-ms", "20",
                                     "--max-body-bytes", "2000000", "--max-image-pixels", "400000"};
    args.insert(args.end(), kModelArgs.begin(), kModelArgs.end());
    server_ = new ServerProcess(args, (*dir_ / "server_stderr.txt").string());
  }
  static void TearDownTestSuite() {
    delete server_;
    delete pictures_;
    fs::remove_all(*dir_);
    delete dir_;
  }

  // Each picture's answer when it ran alone (batch_size 1), computed once.
  static const std::vector<std::string>& sequential_answers() {
    static std::vector<std::string>* answers = nullptr;
    if (!answers) {
      answers = new std::vector<std::string>;
      auto client = server_->client();
      for (const auto& p : *pictures_) {
        const auto res = post_image(*client, p);
        EXPECT_TRUE(res && res->status == 200) << p.name;
        answers->push_back(res ? res->body : "");
      }
    }
    return *answers;
  }

  static fs::path* dir_;
  static std::vector<Picture>* pictures_;
  static ServerProcess* server_;
};
fs::path* Serve::dir_ = nullptr;
std::vector<Picture>* Serve::pictures_ = nullptr;
ServerProcess* Serve::server_ = nullptr;

TEST_F(Serve, AnswersEqualPredictCommandByteForByte) {
  const auto& answers = sequential_answers();
  std::vector<std::string> args = {"predict", "--weights", weights(), "--out", (*dir_ / "predicted").string(),
                                   "--no-overlays"};
  args.insert(args.end(), kModelArgs.begin(), kModelArgs.end());
  for (const auto& p : *pictures_) args.insert(args.end(), {"--input", (*dir_ / p.name).string()});
  const auto run = testing::run_instseg(args, dir_->string());
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto expected = predictions_by_file(testing::read_file_bytes((*dir_ / "predicted/predictions.json").string()));
  for (size_t i = 0; i < pictures_->size(); ++i) {
    const json answer = json::parse(answers[i]);
    EXPECT_EQ(answer["batch_size"], 1);
    ASSERT_TRUE(expected.count((*pictures_)[i].name)) << "predict found nothing in " << (*pictures_)[i].name;
    const auto lines = answer_lines(answers[i]);
    EXPECT_GT(lines.size(), 3u);
    expect_same_lines(lines, expected.at((*pictures_)[i].name), (*pictures_)[i].name);
  }
  const json c = json::parse(answers[2]);
  EXPECT_EQ(c["width"], 213);
  EXPECT_EQ(c["height"], 320);
  EXPECT_EQ(c["results"][0]["category"], "car");  // category_id 3 is COCO's car

  // The same picture as a multipart form and with a JPEG's media type (the type only selects the
  // path; OpenCV reads the bytes) gives the same bytes.
  auto client = server_->client();
  httplib::MultipartFormDataItems form = {{"image", (*pictures_)[0].bytes, "a.png", "image/png"}};
  const auto multipart = client->Post("/v1/predict", form);
  ASSERT_TRUE(multipart);
  EXPECT_EQ(multipart->status, 200) << multipart->body;
  expect_same_lines(answer_lines(multipart->body), answer_lines(answers[0]), "multipart");
}

TEST_F(Serve, QueryOptionsFilterAndShapeTheResults) {
  const auto& answers = sequential_answers();
  const json full = json::parse(answers[0]);
  auto client = server_->client();
  const auto get = [&](const std::string& query) {
    const auto res = post_image(*client, (*pictures_)[0], query);
    EXPECT_TRUE(res && res->status == 200) << query;
    return res ? json::parse(res->body) : json();
  };
  // A threshold at the middle result's score (>= keeps it): the first half, ties included.
  const double middle = full["results"][full["results"].size() / 2]["score"];
  std::ostringstream query;
  query.precision(17);
  query << "?score_thresh=" << middle;
  const json thresholded = get(query.str());
  json expected = json::array();
  for (const auto& r : full["results"])
    if (r["score"].get<double>() >= middle) expected.push_back(r);
  ASSERT_GT(expected.size(), 0u);
  ASSERT_LT(expected.size(), full["results"].size());
  EXPECT_EQ(thresholded["results"], expected);

  const json two = get("?max_detections=2");
  ASSERT_EQ(two["results"].size(), 2u);
  EXPECT_EQ(two["results"][0], full["results"][0]);
  EXPECT_EQ(two["results"][1], full["results"][1]);

  const json none = get("?mask_format=none");
  ASSERT_EQ(none["results"].size(), full["results"].size());
  for (size_t i = 0; i < full["results"].size(); ++i) {
    json without = full["results"][i];
    without.erase("segmentation");
    EXPECT_EQ(none["results"][i], without);
  }

  // Polygons: io/mask_polygons.h's of the RLE mask (tests/io/mask_polygons_test.cpp checks those).
  const json polygon = get("?mask_format=polygon&max_detections=1");
  ASSERT_EQ(polygon["results"].size(), 1u);
  const auto& rle = full["results"][0]["segmentation"];
  const auto mask = coco::from_string(rle["counts"].get<std::string>(), rle["size"][0], rle["size"][1]);
  const auto polygons = polygon["results"][0]["segmentation"].get<std::vector<std::vector<double>>>();
  ASSERT_FALSE(polygons.empty());
  EXPECT_EQ(polygons, io::mask_polygons(mask));
  EXPECT_EQ(polygon["results"][0]["bbox"], full["results"][0]["bbox"]);
}

TEST_F(Serve, SixteenConcurrentClientsAreAnsweredCorrectly) {
  const auto& answers = sequential_answers();
  constexpr int kClients = 16, kRequests = 3;
  std::vector<std::string> bodies(kClients * kRequests);
  std::vector<int> statuses(kClients * kRequests, -1);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = server_->client();
      for (int r = 0; r < kRequests; ++r) {
        const int i = c * kRequests + r;
        const auto res = post_image(*client, (*pictures_)[i % pictures_->size()]);
        if (res) {
          statuses[i] = res->status;
          bodies[i] = res->body;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  int batched = 0;
  for (int i = 0; i < kClients * kRequests; ++i) {
    ASSERT_EQ(statuses[i], 200) << "request " << i << ": " << bodies[i];
    const std::string& alone = answers[i % pictures_->size()];
    const json answer = json::parse(bodies[i]);
    if (answer["batch_size"] == 1) {
      expect_same_lines(answer_lines(bodies[i]), answer_lines(alone), "request " + std::to_string(i));
    } else {
      ++batched;
      expect_close_answers(alone, bodies[i], "request " + std::to_string(i));
    }
  }
  EXPECT_GT(batched, 0) << "16 concurrent clients never shared a batch";
}

TEST_F(Serve, EachBadInputHasItsStatusAndTheServerServesOn) {
  auto client = server_->client();
  const Picture& good = (*pictures_)[0];
  const std::string jpeg = testing::read_file_bytes(testing::source_path("datasets/tiny_coco/val2017/000000037777.jpg"));
  // A 1000 x 600 PNG header (600,000 pixels > 400,000) with no pixel data: refused from the header.
  cv::Mat big(600, 1000, CV_8UC3, cv::Scalar(0, 0, 0));
  std::vector<unsigned char> big_png;
  cv::imencode(".png", big, big_png);
  const std::string big_header(big_png.begin(), big_png.begin() + 64);

  struct Case {
    std::string what, body, type, query;
    int status;
    std::vector<std::string> named;
  };
  const std::vector<Case> cases = {
      {"body over the limit", std::string(2'100'000, 'x'), "image/png", "", 413, {"--max-body-bytes 2000000", "2100000"}},
      {"undecodable", "this is not an image", "image/png", "", 400, {"not a decodable image"}},
      {"truncated JPEG", jpeg.substr(0, jpeg.size() / 2), "image/jpeg", "", 400, {"request body"}},
      {"over the pixel limit", big_header, "image/png", "", 413, {"--max-image-pixels 400000", "1000 x 600"}},
      {"media type", good.bytes, "text/plain", "", 415, {"text/plain"}},
      {"score_thresh", good.bytes, "image/png", "?score_thresh=1.5", 400, {"score_thresh=1.5"}},
      {"mask_format", good.bytes, "image/png", "?mask_format=bitmap", 400, {"mask_format=bitmap"}},
      {"max_detections", good.bytes, "image/png", "?max_detections=-1", 400, {"max_detections=-1"}},
      {"unknown option", good.bytes, "image/png", "?threshold=0.5", 400, {"threshold"}},
  };
  for (const auto& c : cases) {
    // An empty type sends no Content-Type header.
    const auto res = client->Post(("/v1/predict" + c.query).c_str(), c.body, c.type);
    ASSERT_TRUE(res) << c.what << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, c.status) << c.what << ": " << res->body;
    const json error = json::parse(res->body)["error"];
    EXPECT_EQ(error["status"], c.status) << c.what;
    for (const auto& n : c.named) EXPECT_THAT(error["message"].get<std::string>(), HasSubstr(n)) << c.what;
    const auto health = client->Get("/healthz");
    ASSERT_TRUE(health) << "after " << c.what;
    EXPECT_EQ(health->status, 200) << "after " << c.what;
  }
  // No Content-Type at all (httplib's client always sends one): a raw request.
  const std::string untyped = raw_exchange(server_->port(),
                                           "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                           "Content-Length: " + std::to_string(good.bytes.size()) + "\r\n\r\n" + good.bytes,
                                           false);
  EXPECT_EQ(untyped.substr(0, 12), "HTTP/1.1 415") << untyped.substr(0, 300);
  EXPECT_THAT(untyped, HasSubstr("unsupported Content-Type (none)"));
  const auto missing = client->Get("/v2/predict");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  const auto wrong_method = client->Get("/v1/predict");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  EXPECT_EQ(wrong_method->get_header_value("Allow"), "POST");
  // And still predicting, the same bytes as before.
  const auto after = post_image(*client, good);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->status, 200);
  expect_same_lines(answer_lines(after->body), answer_lines(sequential_answers()[0]), "after the bad inputs");
}

TEST_F(Serve, ClientDroppingMidUploadDisturbsNoOne) {
  const auto& answers = sequential_answers();
  // Raw sockets announce a whole picture, send half of it and hang up, while four clients predict.
  auto drop_mid_upload = [&] {
    const std::string& bytes = (*pictures_)[1].bytes;
    const std::string head = "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                             "Content-Length: " + std::to_string(bytes.size()) + "\r\n\r\n";
    raw_exchange(server_->port(), head + bytes.substr(0, bytes.size() / 2), true);
  };
  std::vector<std::string> bodies(4);
  std::vector<std::thread> threads;
  for (int c = 0; c < 4; ++c) {
    threads.emplace_back([&, c] {
      auto client = server_->client();
      const auto res = post_image(*client, (*pictures_)[c % 2 == 0 ? 0 : 2]);
      if (res && res->status == 200) bodies[c] = res->body;
    });
  }
  for (int d = 0; d < 3; ++d) drop_mid_upload();
  for (auto& t : threads) t.join();
  for (int c = 0; c < 4; ++c) {
    ASSERT_FALSE(bodies[c].empty()) << "client " << c << " got no answer";
    const std::string& alone = answers[c % 2 == 0 ? 0 : 2];
    if (json::parse(bodies[c])["batch_size"] == 1) {
      expect_same_lines(answer_lines(bodies[c]), answer_lines(alone), "client " + std::to_string(c));
    } else {
      expect_close_answers(alone, bodies[c], "client " + std::to_string(c));
    }
  }
  EXPECT_EQ(::kill(server_->pid(), 0), 0) << "the server died";
  auto client = server_->client();
  const auto after = post_image(*client, (*pictures_)[1]);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
  expect_same_lines(answer_lines(after->body), answer_lines(answers[1]), "after the dropped uploads");
}

TEST_F(Serve, MetricsCountWhatWasSent) {
  auto client = server_->client();
  const json before = metrics_values(*client);  // this request is counted once answered
  ASSERT_TRUE(before.contains("instseg_queue_depth"));
  for (int i = 0; i < 2; ++i) ASSERT_EQ(post_image(*client, (*pictures_)[i])->status, 200);
  ASSERT_EQ(client->Post("/v1/predict", (*pictures_)[0].bytes, "text/plain")->status, 415);
  ASSERT_EQ(client->Get("/nowhere")->status, 404);
  const json after = metrics_values(*client);
  auto delta = [&](const std::string& key) { return value_or_zero(after, key) - value_or_zero(before, key); };
  EXPECT_EQ(delta("instseg_requests_total{code=\"200\"}"), 3);  // 2 predictions + the first /metrics
  EXPECT_EQ(delta("instseg_requests_total{code=\"415\"}"), 1);
  EXPECT_EQ(delta("instseg_requests_total{code=\"404\"}"), 1);
  EXPECT_EQ(delta("instseg_images_predicted_total"), 2);
  EXPECT_EQ(delta("instseg_batch_size_bucket{le=\"1\"}"), 2);  // one request at a time: batches of 1
  EXPECT_EQ(delta("instseg_request_duration_seconds_count"), 5);
  EXPECT_EQ(delta("instseg_request_duration_seconds_bucket{le=\"+Inf\"}"), 5);
  EXPECT_EQ(after["instseg_queue_depth"], 0);
  EXPECT_EQ(after["instseg_inflight_requests"], 0);
}

TEST_F(Serve, ModelDescribesTheLoadedModel) {
  auto client = server_->client();
  const auto res = client->Get("/v1/model");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const json model = json::parse(res->body);
  EXPECT_EQ(model["weights"], weights());
  EXPECT_EQ(model["num_classes"], 91);
  ASSERT_EQ(model["classes"].size(), 90u);
  EXPECT_EQ(model["classes"][0], json({{"id", 1}, {"name", "person"}}));
  EXPECT_EQ(model["architecture"]["backbone_depth"], 18);
  EXPECT_EQ(model["architecture"]["version"], "v1");
  EXPECT_EQ(model["input"], json({{"min_size", 160}, {"max_size", 256}}));
  EXPECT_EQ(model["max_batch"], 4);
  EXPECT_EQ(model["max_image_pixels"], 400000);
  EXPECT_EQ(model["max_body_bytes"], 2000000);
  const auto health = client->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(json::parse(health->body), json({{"status", "ok"}}));
}

// A second server: a bearer token and room for one waiting request.
TEST(ServeLimits, TokenAndFullQueue) {
  testing::TestDir dir;
  const std::string token_file = dir.write("token", "s3cret-token\n");
  std::vector<std::string> args = {"--weights", weights(), "--token-file", token_file, "--max-queue", "1",
                                   "--max-batch", "1", "--access-log", "none"};
  args.insert(args.end(), kModelArgs.begin(), kModelArgs.end());
  ServerProcess server(args, dir / "stderr.txt");
  auto client = server.client();
  cv::Mat image = cv::imread(testing::source_path("datasets/tiny_coco/val2017/000000037777.jpg"));
  std::vector<unsigned char> png;
  cv::imencode(".png", image, png);
  const Picture picture{"p.png", std::string(png.begin(), png.end())};
  const httplib::Headers good = {{"Authorization", "Bearer s3cret-token"}};

  const auto none = post_image(*client, picture);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_THAT(json::parse(none->body)["error"]["message"].get<std::string>(), HasSubstr("Authorization"));
  const auto wrong = post_image(*client, picture, "", {{"Authorization", "Bearer s3cret-tokeN"}});
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(client->Get("/metrics")->status, 401);
  EXPECT_EQ(client->Get("/healthz")->status, 200);  // probes need no token
  const auto right = post_image(*client, picture, "", good);
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 200) << right->body;

  // Eight at once against one running and one waiting: the rest are refused with Retry-After.
  constexpr int kClients = 8;
  std::vector<int> statuses(kClients, -1);
  std::vector<std::string> retry_after(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto own = server.client();
      const auto res = post_image(*own, picture, "", good);
      if (res) {
        statuses[c] = res->status;
        retry_after[c] = res->get_header_value("Retry-After");
      }
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0, busy = 0;
  for (int c = 0; c < kClients; ++c) {
    if (statuses[c] == 200) ++ok;
    if (statuses[c] == 503) {
      ++busy;
      EXPECT_EQ(retry_after[c], "1");
    }
  }
  EXPECT_EQ(ok + busy, kClients);
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1) << "a queue of 1 took 8 concurrent requests";
  const auto after = post_image(*client, picture, "", good);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

// A request still unanswered after --request-timeout-seconds gets 504 naming the setting, the
// server serves on, and the access log holds one JSON line per request with what it was answered.
TEST(ServeLimits, LateAnswerIs504AndEveryRequestIsLogged) {
  testing::TestDir dir;
  // A lone request waits up to 10 s for a batch of 4 to fill: past the 1 s timeout whatever the
  // machine's load.
  const std::string log_path = dir / "access.jsonl";
  std::vector<std::string> args = {"--weights", weights(), "--max-batch", "4", "--batch-wait-ms", "10000",
                                   "--request-timeout-seconds", "1", "--access-log", log_path};
  args.insert(args.end(), kModelArgs.begin(), kModelArgs.end());
  ServerProcess server(args, dir / "stderr.txt");
  auto client = server.client();
  cv::Mat image = cv::imread(testing::source_path("datasets/tiny_coco/val2017/000000037777.jpg"));
  std::vector<unsigned char> png;
  cv::imencode(".png", image, png);
  const auto late = post_image(*client, {"p.png", std::string(png.begin(), png.end())});
  ASSERT_TRUE(late);
  EXPECT_EQ(late->status, 504);
  const json error = json::parse(late->body)["error"];
  EXPECT_EQ(error["status"], 504);
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("--request-timeout-seconds 1"));
  const auto health = client->Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const auto missing = client->Get("/nowhere");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  // One line per request, in order, each a JSON object with the request and its answer.
  std::vector<json> lines;
  std::istringstream in(testing::read_file_bytes(log_path));
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 3u) << testing::read_file_bytes(log_path);
  EXPECT_EQ(lines[0]["method"], "POST");
  EXPECT_EQ(lines[0]["path"], "/v1/predict");
  EXPECT_EQ(lines[0]["status"], 504);
  EXPECT_EQ(lines[0]["bytes_in"], png.size());
  EXPECT_GE(lines[0]["seconds"].get<double>(), 1.0);
  EXPECT_EQ(lines[1]["path"], "/healthz");
  EXPECT_EQ(lines[1]["status"], 200);
  EXPECT_EQ(lines[2]["path"], "/nowhere");
  EXPECT_EQ(lines[2]["status"], 404);
  for (const json& l : lines) {
    EXPECT_THAT(l["remote"].get<std::string>(), HasSubstr("127.0.0.1"));
    EXPECT_THAT(l["time"].get<std::string>(), ::testing::MatchesRegex("20[0-9-]+T[0-9:.]+Z"));
  }
}

// A third: SIGTERM while requests are in flight answers them all, then exits 0.
TEST(ServeShutdown, SigtermAnswersEveryRequestInFlight) {
  testing::TestDir dir;
  // Batches of 4 that wait (up to 10 s) to be full: of six requests, four are predicted together
  // and two then wait in the queue for two more, whatever the machine's load, when SIGTERM comes.
  // A drain that dropped them would answer 500 or 504 (after the 20 s timeout).
  std::vector<std::string> args = {"--weights", weights(), "--max-batch", "4", "--batch-wait-ms", "10000",
                                   "--request-timeout-seconds", "20"};
  args.insert(args.end(), kModelArgs.begin(), kModelArgs.end());
  ServerProcess server(args, dir / "stderr.txt");
  cv::Mat image = cv::imread(testing::source_path("datasets/tiny_coco/val2017/000000037777.jpg"));
  std::vector<unsigned char> png;
  cv::imencode(".png", image, png);
  const Picture picture{"p.png", std::string(png.begin(), png.end())};

  constexpr int kClients = 6;
  std::vector<int> statuses(kClients, -1);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = server.client();
      const auto res = post_image(*client, picture);
      if (res) statuses[c] = res->status;
    });
  }
  // Wait until four are answered and two wait (received, not answered), then SIGTERM. In flight
  // alone is not enough: a batch's handler still writing its answer counts too, and SIGTERM then
  // came before the sixth client had connected (refused: CI failed so, 1 run in 8). So the access
  // log is read first: four predictions logged means their handlers had returned, and two in
  // flight after that are the other two.
  auto probe = server.client();
  const auto predictions_logged = [&] {
    const std::string log = testing::read_file_bytes(dir / "stderr.txt");
    int n = 0;
    for (size_t at = log.find("\"/v1/predict\""); at != std::string::npos; at = log.find("\"/v1/predict\"", at + 1)) ++n;
    return n;
  };
  bool two_waiting = false;
  for (int i = 0; i < 3000 && !two_waiting; ++i) {
    const int logged = predictions_logged();
    const json m = metrics_values(*probe);
    two_waiting = logged == 4 && value_or_zero(m, "instseg_images_predicted_total") == 4 &&
                  value_or_zero(m, "instseg_inflight_requests") == 2;
    if (!two_waiting) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int exit_code = server.signal_and_wait(SIGTERM);
  for (auto& t : threads) t.join();
  ASSERT_TRUE(two_waiting) << "never four answered and two waiting";
  EXPECT_EQ(exit_code, 0) << testing::read_file_bytes(dir / "stderr.txt");
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(statuses[c], 200) << "client " << c;
  const std::string log = testing::read_file_bytes(dir / "stderr.txt");
  EXPECT_THAT(log, HasSubstr("SIGTERM"));
  // Gone: a new connection is refused.
  auto late = server.client();
  late->set_connection_timeout(2, 0);
  EXPECT_FALSE(late->Get("/healthz"));
}

}  // namespace
}  // namespace instseg
