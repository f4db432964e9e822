// What `instseg serve` checks of a request before decoding it (src/serve/limits.h): the query
// string (parsed by cpp-httplib as the server does, then our options), the Content-Type, the
// header pixel limit on the body and the bearer token. Input: query, Content-Type and
// Authorization lines, then the body. Documented refusal: HttpError with 400, 401, 413 or 415.
#include <httplib.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "instseg/data/image_io.h"
#include "serve/limits.h"

namespace {

// The next '\n'-terminated field of `rest` (all of it when there is no '\n'), removed from it.
std::string take_line(std::string& rest) {
  const size_t end = rest.find('\n');
  std::string line = rest.substr(0, end);
  rest = end == std::string::npos ? std::string() : rest.substr(end + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using instseg::serve::HttpError;
  std::string rest(reinterpret_cast<const char*>(data), size);
  const std::string query = take_line(rest), content_type = take_line(rest), authorization = take_line(rest);
  const std::string& body = rest;

  httplib::Params params;
  httplib::detail::parse_query_text(query, params);
  try {
    const auto q = instseg::serve::parse_predict_query(params);
    if (q.score_thresh) FUZZ_CHECK(std::isfinite(*q.score_thresh) && *q.score_thresh >= 0 && *q.score_thresh <= 1);
    if (q.max_detections) FUZZ_CHECK(*q.max_detections >= 0 && *q.max_detections <= 100000);
  } catch (const HttpError& e) {
    FUZZ_CHECK(e.status == 400);
  }

  const bool multipart = content_type.rfind("multipart/", 0) == 0;
  try {
    const std::string& bytes = instseg::serve::image_bytes(content_type, body, multipart ? &body : nullptr, multipart);
    FUZZ_CHECK(!bytes.empty());
  } catch (const HttpError& e) {
    FUZZ_CHECK(e.status == 400 || e.status == 415);
  }

  constexpr int64_t kLimit = 1'000'000;
  const auto declared =
      instseg::data::image_size_from_header(reinterpret_cast<const unsigned char*>(body.data()), body.size());
  const bool over = declared && static_cast<double>(declared->width) * static_cast<double>(declared->height) > kLimit;
  try {
    instseg::serve::check_image_pixels(body, kLimit);
    FUZZ_CHECK(!over);
  } catch (const HttpError& e) {
    FUZZ_CHECK(e.status == 413 && over);
  }

  try {
    instseg::serve::check_bearer_token(authorization, "s3cret");
    FUZZ_CHECK(authorization == "Bearer s3cret");
  } catch (const HttpError& e) {
    FUZZ_CHECK(e.status == 401 && authorization != "Bearer s3cret");
  }
  return 0;
}
