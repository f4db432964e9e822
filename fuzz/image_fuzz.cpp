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
  try {
    const torch::Tensor rgb = instseg::data::read_image_rgb(path);
    FUZZ_CHECK(rgb.dim() == 3 && rgb.size(0) == 3);
    FUZZ_CHECK(rgb.min().item<float>() >= 0 && rgb.max().item<float>() <= 1);
  } catch (const instseg::InputError&) {
  }
  try {
    const torch::Tensor ids = instseg::data::read_label_image(path);
    FUZZ_CHECK(ids.dim() == 2);
  } catch (const instseg::InputError&) {
  }
  std::remove(path.c_str());
  return 0;
}
