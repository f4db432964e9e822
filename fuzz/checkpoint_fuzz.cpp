// .pth files (include/instseg/checkpoint/state_dict.h): zip archives and the legacy format, read
// as a state dict and as a training-state archive. The readers take a path: each input is written
// to a scratch file on tmpfs. Documented refusal: CheckpointError.
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "fuzz_util.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = instseg::fuzz::scratch_path(".pth");
  instseg::fuzz::write_scratch(path, data, size);
  try {
    for (const auto& [name, tensor] : instseg::read_state_dict(path)) {
      if (tensor.numel() > 0) tensor.sum();  // reads every element of the view
    }
  } catch (const instseg::CheckpointError&) {
  }
  try {
    instseg::read_archive(path);
  } catch (const instseg::CheckpointError&) {
  }
  std::remove(path.c_str());
  return 0;
}
