#pragma once
// A small unpickler for what torch.save writes (pickle protocol 2, plus the few protocol 4 opcodes
// Python may emit). Internal to instseg_checkpoint: readers turn its values into tensors/IValues.
// Hostile input: nothing is called or imported, sizes are checked before anything is allocated,
// and a value that is returned is a tree or DAG without cycles nested at most kMaxNesting deep, so
// code walking it recursively stays within a small stack.
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace instseg::checkpoint_detail {

// Containers nested deeper than this are an error. Python's own pickler stops at its recursion
// limit (1000 by default), so no torch.save file nests deeper; a state dict nests 1 or 2 levels.
constexpr size_t kMaxNesting = 1000;
// Opcodes one pickle may run. Each makes at most one value (~200 bytes with the stack and memo
// slots), so this bounds the reader's memory at ~1 GB whatever the file declares; a torchvision
// Mask R-CNN state dict runs ~12,600 opcodes, with SGD momentum state ~20,000.
constexpr size_t kMaxOpcodes = size_t(1) << 22;

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  // Storage: what a persistent id resolved to (a whole storage as a 1-D tensor); only
  // _rebuild_tensor* accepts it, so views are checked against the storage's real size.
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Object, Tensor, Storage };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  size_t offset = 0;                                    // byte where the pickle made it (messages)
  std::string text;                                     // String; Global/Object: "module.name"
  std::vector<ValuePtr> items;                          // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;   // Dict (insertion order kept)
  torch::Tensor tensor;                                 // Tensor, Storage

  Value() = default;
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  // Frees children without recursion, so even a value nested far deeper than kMaxNesting (while
  // the pickle is still being read) cannot overflow the stack when it is dropped.
  ~Value();

  static ValuePtr make(Kind kind);
  static ValuePtr make_string(std::string text);
  static ValuePtr make_tensor(torch::Tensor tensor, Kind kind = Kind::Tensor);
  bool is_container() const { return kind == Kind::Tuple || kind == Kind::List || kind == Kind::Dict; }
  const char* kind_name() const;
  // For messages: the kind, or "Python object 'module.name'" (what was called), "reference to Python ..."
  std::string describe() const;
  // The entry with string key `key`, or nullptr.
  ValuePtr find(const std::string& key) const;
};

// Resolves a BINPERSID id (torch.save's ('storage', type, key, location, numel) tuple) to a
// storage, returned as a Storage value holding the whole storage as a 1-D tensor.
// `at` is the byte of the BINPERSID opcode in the file, for messages.
using PersistentLoad = std::function<ValuePtr(const Value& pid, size_t at)>;

class Unpickler {
 public:
  // `where` names the source in messages ("model.pth" or "model.pth, record archive/data.pkl");
  // `base_offset` is added to positions so messages give offsets in the file.
  Unpickler(const char* data, size_t size, std::string where, size_t base_offset,
            PersistentLoad persistent_load);

  // Runs one pickle starting at *pos up to its STOP; *pos is left just after STOP. The result has
  // no reference cycles and nests at most kMaxNesting containers deep (else CheckpointError).
  ValuePtr load(size_t* pos);

 private:
  [[noreturn]] void fail(size_t at, const std::string& what) const;
  const char* take(size_t* pos, size_t n, size_t op_at) const;
  ValuePtr make(Value::Kind kind, size_t at);
  ValuePtr run(size_t* pos);
  std::unordered_set<const Value*> check_nesting(const Value& root) const;
  void break_containers(const std::unordered_set<const Value*>& keep);
  ValuePtr call(const std::string& global, const std::vector<ValuePtr>& args, size_t at);

  const char* data_;
  size_t size_;
  std::string where_;
  size_t base_offset_;
  PersistentLoad persistent_load_;
  // Every container the running pickle made: memo references can make a container hold itself,
  // so those not in the result have their children dropped (a cycle of shared_ptrs would leak).
  std::vector<ValuePtr> containers_;
};

}  // namespace instseg::checkpoint_detail
