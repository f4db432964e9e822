#pragma once
// What a request may be: its query options, media type, image size and bearer token. Each
// refusal is an HttpError whose message names the limit or option and the value received.
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace instseg::serve {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message) : std::runtime_error(message), status(status) {}
  int status;
};

enum class MaskFormat { kRle, kPolygon, kNone };

// POST /v1/predict's query: ?score_thresh=X&mask_format=rle|polygon|none&max_detections=N.
struct PredictQuery {
  std::optional<double> score_thresh;  // keep detections scoring >= X (X in [0, 1])
  MaskFormat mask_format = MaskFormat::kRle;
  std::optional<int> max_detections;   // keep the N best (N >= 0)
};
// 400 naming the parameter for an unknown one, a repeated one or a bad value.
PredictQuery parse_predict_query(const std::multimap<std::string, std::string>& params);

// The image bytes of a request: the body for image/jpeg|png|bmp|webp or application/octet-stream,
// the part named "image" of a multipart/form-data body (given as `image_part`, null if absent).
// 415 for other media types, 400 for a form without an "image" part or an empty body.
const std::string& image_bytes(const std::string& content_type, const std::string& body,
                               const std::string* image_part, bool is_multipart);

// 413 when the header declares more than `max_pixels`; the decoder checks the rest (400).
void check_image_pixels(const std::string& bytes, int64_t max_pixels);

// The token of a --token-file: its first line without surrounding white space. ConfigError naming
// the file when it cannot be read or the token is empty.
std::string read_token_file(const std::string& path);
// 401 unless `authorization` is "Bearer <token>"; compared in constant time (no timing hint).
void check_bearer_token(const std::string& authorization, const std::string& token);

}  // namespace instseg::serve
