#pragma once
// A small unpickler for what torch.save writes (pickle protocol 2, plus the few protocol 4 opcodes
// Python may emit). Internal to instseg_checkpoint: readers turn its values into tensors/IValues.
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace instseg::checkpoint_detail {

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Object, Tensor };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;                                     // String; Global/Object: "module.name"
  std::vector<ValuePtr> items;                          // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;   // Dict (insertion order kept)
  torch::Tensor tensor;                                 // Tensor; also a storage (1-D, whole)

  static ValuePtr make(Kind kind);
  static ValuePtr make_string(std::string text);
  static ValuePtr make_tensor(torch::Tensor tensor);
  const char* kind_name() const;
  // The entry with string key `key`, or nullptr.
  ValuePtr find(const std::string& key) const;
};

// Resolves a BINPERSID id (torch.save's ('storage', type, key, location, numel) tuple) to a
// storage, returned as a Tensor value holding the whole storage as a 1-D tensor.
using PersistentLoad = std::function<ValuePtr(const Value& pid)>;

class Unpickler {
 public:
  // `where` names the source in messages ("model.pth" or "model.pth, record archive/data.pkl");
  // `base_offset` is added to positions so messages give offsets in the file.
  Unpickler(const char* data, size_t size, std::string where, size_t base_offset,
            PersistentLoad persistent_load);

  // Runs one pickle starting at *pos up to its STOP; *pos is left just after STOP.
  ValuePtr load(size_t* pos);

 private:
  [[noreturn]] void fail(size_t at, const std::string& what) const;
  const char* take(size_t* pos, size_t n, size_t op_at) const;
  ValuePtr call(const std::string& global, const std::vector<ValuePtr>& args, size_t at) const;

  const char* data_;
  size_t size_;
  std::string where_;
  size_t base_offset_;
  PersistentLoad persistent_load_;
};

}  // namespace instseg::checkpoint_detail
