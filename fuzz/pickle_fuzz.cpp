// The unpickler (src/checkpoint/pickle.h) on raw pickle bytes: one pickle after another, as the
// legacy .pth format stores them. A persistent id resolves to a small float storage whose length
// the id gives (capped), so tensor views (_rebuild_tensor_v2) are checked against real storages.
// Documented refusal: CheckpointError.
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "checkpoint/pickle.h"
#include "fuzz_util.h"
#include "instseg/errors.h"

namespace {

using instseg::checkpoint_detail::Unpickler;
using instseg::checkpoint_detail::Value;
using instseg::checkpoint_detail::ValuePtr;

ValuePtr storage(const Value& pid, size_t at) {
  if (pid.kind != Value::Kind::Tuple || pid.items.size() < 5 || pid.items[4]->kind != Value::Kind::Int) {
    throw instseg::CheckpointError("fuzz.pkl at byte " + std::to_string(at) + ": malformed persistent id");
  }
  const int64_t numel = std::clamp<int64_t>(pid.items[4]->integer, 0, 1024);
  return Value::make_tensor(torch::zeros({numel}), Value::Kind::Storage);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Unpickler unpickler(reinterpret_cast<const char*>(data), size, "fuzz.pkl", 0, storage);
  try {
    for (size_t pos = 0; pos < size;) {
      const size_t before = pos;
      const ValuePtr value = unpickler.load(&pos);
      FUZZ_CHECK(value != nullptr && pos > before && pos <= size);
      if (value->kind == Value::Kind::Tensor && value->tensor.numel() > 0) {
        value->tensor.sum().item<float>();  // reads every element of the view
      }
    }
  } catch (const instseg::CheckpointError&) {
  }
  return 0;
}
