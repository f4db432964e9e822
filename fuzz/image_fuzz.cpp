// Image decoding (include/instseg/data/image_io.h): JPEG, PNG and whatever else OpenCV reads, as
// RGB and as a label image. The readers take a path: each input is written to a scratch file on
// tmpfs. Documented refusal: InputError.
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz_util.h"
#include "instseg/data/image_io.h"
#include "instseg/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = instseg::fuzz::scratch_path(".img");
  instseg::fuzz::write_scratch(path, data, size);
  // A small limit keeps every accepted picture far below libFuzzer's memory cap; the limit's
  // logic is the same at any value.
  instseg::data::ImageReadOptions options;
  options.max_pixels = 4'000'000;
  // The limit is checked on the header before decoding: a header that declares one size while
  // the decoder makes another would let a small declared size through to a big allocation.
  const auto declared = instseg::data::image_size_from_header(data, size);
  try {
    const torch::Tensor rgb = instseg::data::read_image_rgb(path, options);
    FUZZ_CHECK(rgb.dim() == 3 && rgb.size(0) == 3);
    FUZZ_CHECK(rgb.min().item<float>() >= 0 && rgb.max().item<float>() <= 1);
    if (declared) FUZZ_CHECK(rgb.size(1) == declared->height && rgb.size(2) == declared->width);
  } catch (const instseg::InputError&) {
  }
  try {
    const torch::Tensor ids = instseg::data::read_label_image(path, options);
    FUZZ_CHECK(ids.dim() == 2);
    if (declared) FUZZ_CHECK(ids.size(0) == declared->height && ids.size(1) == declared->width);
  } catch (const instseg::InputError&) {
  }
  std::remove(path.c_str());
  return 0;
}
