#include "checkpoint/pickle.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "instseg/errors.h"

namespace instseg::checkpoint_detail {

ValuePtr Value::make(Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

ValuePtr Value::make_string(std::string text) {
  auto v = make(Kind::String);
  v->text = std::move(text);
  return v;
}

ValuePtr Value::make_tensor(torch::Tensor tensor, Kind kind) {
  auto v = make(kind);
  v->tensor = std::move(tensor);
  return v;
}

Value::~Value() {
  if (items.empty() && entries.empty()) return;
  // Children whose last owner we are give up their own children to this list before they die,
  // so every destructor below runs on a value without children and returns at once.
  std::vector<ValuePtr> pending;
  auto adopt_children = [&pending](Value& v) {
    for (auto& item : v.items) pending.push_back(std::move(item));
    for (auto& [key, value] : v.entries) {
      pending.push_back(std::move(key));
      pending.push_back(std::move(value));
    }
    v.items.clear();
    v.entries.clear();
  };
  adopt_children(*this);
  while (!pending.empty()) {
    ValuePtr v = std::move(pending.back());
    pending.pop_back();
    if (v && v.use_count() == 1) adopt_children(*v);
  }
}

const char* Value::kind_name() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Object: return "object";
    case Kind::Tensor: return "tensor";
    case Kind::Storage: return "storage";
  }
  return "?";
}

std::string Value::describe() const {
  if (kind == Kind::Object) return "Python object '" + text + "'";
  if (kind == Kind::Global) return "reference to Python '" + text + "'";
  return kind_name();
}

ValuePtr Value::find(const std::string& key) const {
  for (const auto& [k, v] : entries) {
    if (k->kind == Kind::String && k->text == key) return v;
  }
  return nullptr;
}

Unpickler::Unpickler(const char* data, size_t size, std::string where, size_t base_offset,
                     PersistentLoad persistent_load)
    : data_(data),
      size_(size),
      where_(std::move(where)),
      base_offset_(base_offset),
      persistent_load_(std::move(persistent_load)) {}

void Unpickler::fail(size_t at, const std::string& what) const {
  throw CheckpointError(where_ + " at byte " + std::to_string(base_offset_ + at) + ": " + what);
}

const char* Unpickler::take(size_t* pos, size_t n, size_t op_at) const {
  if (n > size_ - *pos) {
    fail(op_at, "truncated: opcode needs " + std::to_string(n) + " more bytes, data ends at byte " +
                    std::to_string(base_offset_ + size_));
  }
  const char* p = data_ + *pos;
  *pos += n;
  return p;
}

namespace {

template <typename T>
T little_endian(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the formats are little-endian, as are our targets
  return v;
}

std::vector<int64_t> int_tuple(const ValuePtr& v) {
  std::vector<int64_t> out;
  for (const auto& item : v->items) out.push_back(item->integer);
  return out;
}

bool all_ints(const ValuePtr& v) {
  if (v->kind != Value::Kind::Tuple && v->kind != Value::Kind::List) return false;
  for (const auto& item : v->items) {
    if (item->kind != Value::Kind::Int) return false;
  }
  return true;
}

}  // namespace

ValuePtr Unpickler::make(Value::Kind kind, size_t at) {
  auto v = Value::make(kind);
  v->offset = base_offset_ + at;
  if (v->is_container()) containers_.push_back(v);
  return v;
}

// The callables torch.save pickles. Anything else becomes an opaque Object that names the callable
// (nothing is imported or run), so wrappers that carry e.g. argparse.Namespace next to the weights
// still load; using one as a tensor or value fails later with a message naming it.
ValuePtr Unpickler::call(const std::string& global, const std::vector<ValuePtr>& args, size_t at) {
  using K = Value::Kind;
  if (global == "collections.OrderedDict") {
    if (!args.empty()) fail(at, "OrderedDict with constructor arguments is not supported");
    return make(K::Dict, at);
  }
  if (global == "torch._utils._rebuild_tensor_v2" || global == "torch._utils._rebuild_tensor") {
    // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
    if (args.size() < 4 || args[0]->kind != K::Storage || args[1]->kind != K::Int ||
        !all_ints(args[2]) || !all_ints(args[3]) || args[2]->items.size() != args[3]->items.size()) {
      fail(at, global + " called with unexpected arguments");
    }
    const torch::Tensor& storage = args[0]->tensor;
    const auto size = int_tuple(args[2]);
    const auto stride = int_tuple(args[3]);
    const int64_t offset = args[1]->integer;
    const int64_t storage_numel = storage.numel();
    // The view must stay inside its storage, or as_strided would read out of bounds; and neither
    // its element count nor its extent in bytes may overflow int64 (c10 computes both unchecked).
    // Dimensions of size 0 count as 1 here, so the arithmetic is checked for empty tensors too.
    const auto too_big = [&] { fail(at, "tensor view with size and stride beyond 64-bit range"); };
    if (offset < 0) fail(at, "tensor view with negative storage offset " + std::to_string(offset));
    int64_t last = offset;
    int64_t count = 1;
    bool empty = false;
    for (size_t d = 0; d < size.size(); ++d) {
      if (size[d] < 0 || stride[d] < 0) fail(at, "tensor with negative size or stride");
      if (size[d] == 0) empty = true;
      int64_t step = 0;
      const int64_t extent = std::max<int64_t>(size[d], 1);
      if (__builtin_mul_overflow(extent - 1, stride[d], &step) || __builtin_add_overflow(last, step, &last) ||
          __builtin_mul_overflow(count, extent, &count)) {
        too_big();
      }
    }
    int64_t end = 0, end_byte = 0;
    if (__builtin_add_overflow(last, 1, &end) || __builtin_mul_overflow(end, int64_t(storage.element_size()), &end_byte)) {
      too_big();
    }
    if ((!empty && last >= storage_numel) || (empty && offset > storage_numel)) {
      fail(at, "tensor view (offset " + std::to_string(offset) + ", last element " + std::to_string(last) +
                   ") exceeds its storage of " + std::to_string(storage_numel) + " elements");
    }
    auto tensor = Value::make_tensor(storage.as_strided(size, stride, offset));
    tensor->offset = base_offset_ + at;
    return tensor;
  }
  if (global == "torch._utils._rebuild_parameter") {
    if (args.empty() || args[0]->kind != K::Tensor) fail(at, global + " without a tensor");
    return args[0];
  }
  if (global == "torch.jit._pickle.restore_type_tag" || global == "torch.jit._pickle.build_intlist" ||
      global == "torch.jit._pickle.build_doublelist" || global == "torch.jit._pickle.build_boollist" ||
      global == "torch.jit._pickle.build_tensorlist") {
    // LibTorch's pickler wraps typed containers in these; the value itself is the first argument.
    if (args.empty()) fail(at, global + " without arguments");
    return args[0];
  }
  auto object = make(K::Object, at);
  object->text = global;
  return object;
}

ValuePtr Unpickler::load(size_t* pos) {
  containers_.clear();
  ValuePtr root;
  std::unordered_set<const Value*> kept;
  try {
    root = run(pos);
    kept = check_nesting(*root);
  } catch (...) {
    break_containers({});
    throw;
  }
  break_containers(kept);
  return root;
}

// One walk over the result with an explicit stack (never the C++ one), remembering each container's
// height so a DAG that shares subtrees (cheap with memo references) is walked once per container.
// Returns the containers the result holds (itself included).
std::unordered_set<const Value*> Unpickler::check_nesting(const Value& root) const {
  std::unordered_set<const Value*> reachable;
  if (!root.is_container()) return reachable;
  struct Frame {
    const Value* value;
    size_t next = 0;    // index of the next child (dict: key, value, key, ...)
    size_t below = 0;   // containers nested below this one, so far
  };
  auto child = [](const Value& v, size_t i) -> const Value* {
    if (v.kind != Value::Kind::Dict) return i < v.items.size() ? v.items[i].get() : nullptr;
    if (i >= 2 * v.entries.size()) return nullptr;
    return (i % 2 ? v.entries[i / 2].second : v.entries[i / 2].first).get();
  };
  std::unordered_map<const Value*, size_t> height;  // finished containers: containers from it down
  std::unordered_set<const Value*> open;            // containers on the current path
  std::vector<Frame> path{{&root}};
  open.insert(&root);
  while (!path.empty()) {
    Frame& frame = path.back();
    const Value* c = child(*frame.value, frame.next++);
    if (!c) {
      const size_t h = frame.below + 1;
      height.emplace(frame.value, h);
      open.erase(frame.value);
      path.pop_back();
      if (!path.empty()) path.back().below = std::max(path.back().below, h);
      continue;
    }
    if (!c->is_container()) continue;
    const size_t at = c->offset - base_offset_;
    if (open.count(c)) {
      fail(at, std::string("a ") + c->kind_name() + " made here contains itself (a reference cycle); "
                   "checkpoints have none");
    }
    const auto done = height.find(c);
    const size_t levels = path.size() + (done == height.end() ? 1 : done->second);
    if (levels > kMaxNesting) {
      fail(at, "containers nested deeper than " + std::to_string(kMaxNesting) + " levels");
    }
    if (done != height.end()) {
      frame.below = std::max(frame.below, done->second);
    } else {
      open.insert(c);
      path.push_back({c});
    }
  }
  for (const auto& [v, h] : height) reachable.insert(v);
  return reachable;
}

// Drops the children of every container the pickle made except those in `keep` (the result's):
// one that memo references made hold itself is then freed too instead of leaking.
void Unpickler::break_containers(const std::unordered_set<const Value*>& keep) {
  for (const auto& c : containers_) {
    if (keep.count(c.get())) continue;
    c->items.clear();
    c->entries.clear();
  }
  containers_.clear();
}

ValuePtr Unpickler::run(size_t* pos) {
  using K = Value::Kind;
  std::vector<ValuePtr> stack;
  std::vector<size_t> marks;
  std::unordered_map<uint64_t, ValuePtr> memo;
  // Per dict, the entry index of each string key, so a repeated key replaces its entry in O(1).
  std::unordered_map<const Value*, std::unordered_map<std::string, size_t>> dict_keys;
  size_t opcodes = 0;

  while (true) {
    const size_t at = *pos;
    const auto op = static_cast<uint8_t>(*take(pos, 1, at));
    if (++opcodes > kMaxOpcodes) {
      fail(at, "pickle runs more than " + std::to_string(kMaxOpcodes) +
                   " opcodes, far more than any checkpoint needs (refused to bound memory)");
    }
    auto pop = [&]() {
      if (stack.empty() || (!marks.empty() && stack.size() <= marks.back())) {
        fail(at, "pickle stack underflow");
      }
      auto v = stack.back();
      stack.pop_back();
      return v;
    };
    auto pop_mark = [&]() {
      if (marks.empty()) fail(at, "pickle opcode needs a MARK but none is set");
      std::vector<ValuePtr> items(stack.begin() + marks.back(), stack.end());
      stack.resize(marks.back());
      marks.pop_back();
      return items;
    };
    auto top = [&]() {
      if (stack.empty()) fail(at, "pickle stack underflow");
      return stack.back();
    };
    auto push_int = [&](int64_t i) {
      auto v = make(K::Int, at);
      v->integer = i;
      stack.push_back(v);
    };
    auto push_string = [&](size_t n) {
      auto v = make(K::String, at);
      v->text.assign(take(pos, n, at), n);
      stack.push_back(v);
    };
    auto push_long = [&](size_t n) {
      if (n > 8) fail(at, "integer wider than 64 bits");
      const char* p = take(pos, n, at);
      uint64_t u = 0;
      for (size_t i = 0; i < n; ++i) u |= uint64_t(uint8_t(p[i])) << (8 * i);
      if (n > 0 && n < 8 && (uint8_t(p[n - 1]) & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
      push_int(static_cast<int64_t>(u));
    };
    auto set_items = [&](const ValuePtr& dict, const std::vector<ValuePtr>& kv) {
      if (dict->kind != K::Dict) fail(at, std::string("SETITEM on a ") + dict->describe());
      if (kv.size() % 2) fail(at, "SETITEMS with an odd number of stack items");
      auto& index = dict_keys[dict.get()];
      for (size_t i = 0; i < kv.size(); i += 2) {
        if (kv[i]->kind == K::String) {
          const auto [it, added] = index.emplace(kv[i]->text, dict->entries.size());
          if (!added) {
            dict->entries[it->second].second = kv[i + 1];
            continue;
          }
        }
        dict->entries.emplace_back(kv[i], kv[i + 1]);
      }
    };
    auto append = [&](const ValuePtr& list, const std::vector<ValuePtr>& items) {
      if (list->kind != K::List) fail(at, std::string("APPEND on a ") + list->describe());
      list->items.insert(list->items.end(), items.begin(), items.end());
    };
    auto make_tuple = [&](std::vector<ValuePtr> items) {
      auto t = make(K::Tuple, at);
      t->items = std::move(items);
      stack.push_back(t);
    };
    auto memo_get = [&](uint64_t key) {
      auto it = memo.find(key);
      if (it == memo.end()) fail(at, "memo key " + std::to_string(key) + " was never stored");
      stack.push_back(it->second);
    };

    switch (op) {
      case 0x80: take(pos, 1, at); break;                          // PROTO
      case 0x95: take(pos, 8, at); break;                          // FRAME (length hint only)
      case '.':                                                     // STOP
        if (stack.size() != 1 || !marks.empty()) fail(at, "STOP with a malformed stack");
        return stack.back();
      case '(': marks.push_back(stack.size()); break;              // MARK
      case '1': pop_mark(); break;                                 // POP_MARK
      case '0': pop(); break;                                      // POP
      case '2': stack.push_back(top()); break;                     // DUP
      case 'N': stack.push_back(make(K::None, at)); break;         // NONE
      case 0x88:                                                    // NEWTRUE
      case 0x89: {                                                  // NEWFALSE
        auto v = make(K::Bool, at);
        v->boolean = op == 0x88;
        stack.push_back(v);
        break;
      }
      case 'J': push_int(little_endian<int32_t>(take(pos, 4, at))); break;   // BININT
      case 'K': push_int(uint8_t(*take(pos, 1, at))); break;                 // BININT1
      case 'M': push_int(little_endian<uint16_t>(take(pos, 2, at))); break;  // BININT2
      case 0x8a: push_long(uint8_t(*take(pos, 1, at))); break;               // LONG1
      case 0x8b: push_long(little_endian<uint32_t>(take(pos, 4, at))); break;  // LONG4
      case 'G': {                                                   // BINFLOAT, big-endian
        const char* p = take(pos, 8, at);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | uint8_t(p[i]);
        auto v = make(K::Float, at);
        std::memcpy(&v->real, &bits, 8);
        stack.push_back(v);
        break;
      }
      case 'X': case 'B': push_string(little_endian<uint32_t>(take(pos, 4, at))); break;  // BINUNICODE, BINBYTES
      case 0x8c: case 'C': case 'U': push_string(uint8_t(*take(pos, 1, at))); break;      // SHORT_BINUNICODE/BYTES/STRING
      case 'T': push_string(little_endian<uint32_t>(take(pos, 4, at))); break;            // BINSTRING
      case 0x8d: case 0x8e: push_string(little_endian<uint64_t>(take(pos, 8, at))); break;  // BINUNICODE8, BINBYTES8
      case '}': stack.push_back(make(K::Dict, at)); break;         // EMPTY_DICT
      case ']': stack.push_back(make(K::List, at)); break;         // EMPTY_LIST
      case ')': make_tuple({}); break;                             // EMPTY_TUPLE
      case 't': make_tuple(pop_mark()); break;                     // TUPLE
      case 0x85: case 0x86: case 0x87: {                           // TUPLE1..3
        std::vector<ValuePtr> items(op - 0x84);
        for (size_t i = items.size(); i-- > 0;) items[i] = pop();
        make_tuple(std::move(items));
        break;
      }
      case 'l': {                                                   // LIST
        auto l = make(K::List, at);
        l->items = pop_mark();
        stack.push_back(l);
        break;
      }
      case 'd': {                                                   // DICT
        auto d = make(K::Dict, at);
        set_items(d, pop_mark());
        stack.push_back(d);
        break;
      }
      case 's': {                                                   // SETITEM
        auto value = pop();
        auto key = pop();
        set_items(top(), {key, value});
        break;
      }
      case 'u': { auto kv = pop_mark(); set_items(top(), kv); break; }  // SETITEMS
      case 'a': { auto v = pop(); append(top(), {v}); break; }         // APPEND
      case 'e': { auto items = pop_mark(); append(top(), items); break; }  // APPENDS
      case 'q': memo[uint8_t(*take(pos, 1, at))] = top(); break;                  // BINPUT
      case 'r': memo[little_endian<uint32_t>(take(pos, 4, at))] = top(); break;   // LONG_BINPUT
      case 0x94: memo[memo.size()] = top(); break;                                // MEMOIZE
      case 'h': memo_get(uint8_t(*take(pos, 1, at))); break;                      // BINGET
      case 'j': memo_get(little_endian<uint32_t>(take(pos, 4, at))); break;       // LONG_BINGET
      case 'c': {                                                   // GLOBAL "module\nname\n"
        std::string parts[2];
        for (auto& part : parts) {
          const void* nl = std::memchr(data_ + *pos, '\n', size_ - *pos);
          if (!nl) fail(at, "truncated GLOBAL name");
          const size_t n = static_cast<const char*>(nl) - (data_ + *pos);
          part.assign(take(pos, n + 1, at), n);
        }
        auto g = make(K::Global, at);
        g->text = parts[0] + "." + parts[1];
        stack.push_back(g);
        break;
      }
      case 0x93: {                                                  // STACK_GLOBAL
        auto name = pop();
        auto module = pop();
        if (name->kind != K::String || module->kind != K::String) fail(at, "STACK_GLOBAL needs two strings");
        auto g = make(K::Global, at);
        g->text = module->text + "." + name->text;
        stack.push_back(g);
        break;
      }
      case 'R':                                                     // REDUCE
      case 0x81: {                                                  // NEWOBJ
        auto args = pop();
        auto callable = pop();
        if (callable->kind != K::Global) fail(at, "call of a " + callable->describe());
        if (args->kind != K::Tuple) {
          fail(at, "arguments of '" + callable->text + "' are a " + args->describe() + ", not a tuple");
        }
        stack.push_back(call(callable->text, args->items, at));
        break;
      }
      case 'b': {                                                   // BUILD
        pop();  // state: OrderedDict._metadata (module versions) or an opaque object's __dict__
        const auto target = top();
        if (target->kind != K::Dict && target->kind != K::Object && target->kind != K::Tensor) {
          fail(at, "BUILD on a " + target->describe());
        }
        break;
      }
      case 'Q': {                                                   // BINPERSID
        auto pid = pop();
        if (!persistent_load_) fail(at, "persistent id in a pickle that may not reference storages");
        auto storage = persistent_load_(*pid, base_offset_ + at);
        storage->offset = base_offset_ + at;
        stack.push_back(storage);
        break;
      }
      default: {
        std::ostringstream os;
        os << "unknown pickle opcode 0x" << std::hex << int(op);
        fail(at, os.str());
      }
    }
  }
}

}  // namespace instseg::checkpoint_detail
