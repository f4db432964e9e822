#include "instseg/checkpoint/state_dict.h"

#include <caffe2/serialize/file_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <iomanip>
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <unordered_map>

#include "checkpoint/pickle.h"
#include "checkpoint/reader.h"
#include "checkpoint/zip_directory.h"
#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

using checkpoint_detail::Unpickled;
using checkpoint_detail::Unpickler;
using checkpoint_detail::Value;
using checkpoint_detail::ValuePtr;
using Kind = Value::Kind;

// torch.save's legacy format opens with pickle(MAGIC_NUMBER = 0x1950a86a20f9469cfc6c):
// PROTO 2, LONG1 of 10 bytes, STOP.
constexpr char kLegacyMagic[] = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";
constexpr size_t kLegacyMagicSize = sizeof(kLegacyMagic) - 1;
constexpr int64_t kLegacyProtocolVersion = 1001;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw CheckpointError(path + ": cannot open file");
  std::string bytes(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), bytes.size())) throw CheckpointError(path + ": read failed");
  return bytes;
}

std::string hex_bytes(const std::string& bytes, size_t n) {
  std::ostringstream os;
  for (size_t i = 0; i < std::min(n, bytes.size()); ++i) {
    os << (i ? " " : "") << std::hex << std::setw(2) << std::setfill('0') << int(uint8_t(bytes[i]));
  }
  return os.str();
}

// The storage class named in a persistent id, e.g. torch.FloatStorage -> float32.
torch::ScalarType storage_dtype(const Value& type, const std::string& where) {
  static const std::map<std::string, torch::ScalarType> kTypes = {
      {"torch.FloatStorage", torch::kFloat},     {"torch.DoubleStorage", torch::kDouble},
      {"torch.HalfStorage", torch::kHalf},       {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.LongStorage", torch::kLong},       {"torch.IntStorage", torch::kInt},
      {"torch.ShortStorage", torch::kShort},     {"torch.CharStorage", torch::kChar},
      {"torch.ByteStorage", torch::kByte},       {"torch.BoolStorage", torch::kBool},
      {"torch.ComplexFloatStorage", torch::kComplexFloat},
      {"torch.ComplexDoubleStorage", torch::kComplexDouble},
      // Untyped storages (PyTorch >= 1.12 internals) hold bytes.
      {"torch.UntypedStorage", torch::kByte},    {"torch._UntypedStorage", torch::kByte},
      {"torch.storage.UntypedStorage", torch::kByte}, {"torch.storage._UntypedStorage", torch::kByte},
  };
  auto it = type.kind == Kind::Global ? kTypes.find(type.text) : kTypes.end();
  if (it == kTypes.end()) {
    throw CheckpointError(where + ": unsupported storage type '" + type.text + "'");
  }
  return it->second;
}

struct StorageId {
  torch::ScalarType dtype;
  std::string key;
  int64_t numel;
};

// ('storage', storage_type, key, location, numel[, view_metadata]) as both formats write it.
StorageId parse_storage_id(const Value& pid, const std::string& where) {
  const auto& f = pid.items;
  if (pid.kind != Kind::Tuple || f.size() < 5 || f[0]->kind != Kind::String || f[0]->text != "storage" ||
      f[2]->kind != Kind::String || f[4]->kind != Kind::Int) {
    throw CheckpointError(where + ": malformed persistent id (expected ('storage', type, key, location, numel))");
  }
  if (f.size() > 5 && f[5]->kind != Kind::None) {
    throw CheckpointError(where + ": storage '" + f[2]->text + "' is a view of another storage (pre-1.0 format), not supported");
  }
  if (f[4]->integer < 0) {
    throw CheckpointError(where + ": storage '" + f[2]->text + "' declares " + std::to_string(f[4]->integer) + " elements");
  }
  return {storage_dtype(*f[1], where), f[2]->text, f[4]->integer};
}

// caffe2's MemoryReadAdapter copies whatever range it is asked for, and the offsets come from the
// zip's own (untrusted) directory; this one stops at the end of the bytes.
class BytesReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BytesReadAdapter(const std::string& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = static_cast<size_t>(std::min<uint64_t>(n, bytes_.size() - pos));
    std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  const std::string& bytes_;
};

// The directory is checked before LibTorch reads any record (its constructor reads 'version'), so
// what it allocates for records is bounded by the file's size; see zip_directory.h.
Unpickled unpickle_zip(const std::string& path, const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& in) {
  const uint64_t file_size = checkpoint_detail::check_zip_records(*in, path);
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(in);
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    why = why.substr(0, why.find('\n'));
    throw CheckpointError(path + ": not a readable zip archive (truncated or corrupt?): " + why);
  }
  if (!zip->hasRecord("data.pkl")) {
    throw CheckpointError(path + ": zip archive without a data.pkl record, not a torch.save file");
  }
  auto get = [&](const std::string& record) {
    try {
      return zip->getRecord(record);
    } catch (const c10::Error& e) {
      std::string why = e.what_without_backtrace();
      throw CheckpointError(path + ": record '" + record + "' unreadable: " + why.substr(0, why.find('\n')));
    }
  };
  const std::string where = path + " (record data.pkl)";
  std::map<std::string, torch::Tensor> storages;
  // Records are found case-insensitively (miniz), so keys 'a' and 'A' would read one record twice:
  // what is read in all may not exceed the file either.
  uint64_t read_in_all = 0;
  auto load_storage = [&](const Value& pid, size_t at) {
    const StorageId id = parse_storage_id(pid, where + " at byte " + std::to_string(at));
    auto& storage = storages[id.key];
    if (!storage.defined()) {
      const std::string record = "data/" + id.key;
      if (!zip->hasRecord(record)) throw CheckpointError(path + ": record '" + record + "' is missing");
      auto [data, nbytes] = get(record);
      if (nbytes > file_size - read_in_all) {
        throw CheckpointError(where + " at byte " + std::to_string(at) + ": storage '" + id.key +
                              "' brings the bytes read from records to " + std::to_string(read_in_all + nbytes) +
                              ", more than the file's " + std::to_string(file_size) +
                              " (storage keys that differ only in case name one record)");
      }
      read_in_all += nbytes;
      const size_t element = c10::elementSize(id.dtype);
      if (nbytes % element != 0 || int64_t(nbytes / element) < id.numel) {
        throw CheckpointError(path + ": record '" + record + "' holds " + std::to_string(nbytes) +
                              " bytes, expected " + std::to_string(id.numel) + " elements of " +
                              std::to_string(element) + " bytes");
      }
      // The tensor adopts the record's buffer instead of copying it (checkpoints are large).
      auto owner = std::make_shared<at::DataPtr>(std::move(data));
      storage = torch::from_blob(owner->get(), {int64_t(nbytes / element)}, [owner](void*) {},
                                 torch::TensorOptions().dtype(id.dtype));
    }
    return Value::make_tensor(storage, Kind::Storage);
  };
  auto [pkl, pkl_size] = get("data.pkl");
  read_in_all = pkl_size;
  size_t pos = 0;
  Unpickler unpickler(static_cast<const char*>(pkl.get()), pkl_size, where, 0, load_storage);
  return {unpickler.load(&pos), path, "data.pkl"};
}

Unpickled unpickle_legacy(const std::string& path, const std::string& bytes) {
  if (bytes.size() < kLegacyMagicSize) {
    throw CheckpointError(path + ": truncated: " + std::to_string(bytes.size()) +
                          " bytes, shorter than the legacy torch.save magic number");
  }
  if (bytes.compare(0, kLegacyMagicSize, kLegacyMagic, kLegacyMagicSize) != 0) {
    throw CheckpointError(path + " at byte 0: a pickle but not a torch.save file (wrong magic number; starts with " +
                          hex_bytes(bytes, 16) + ")");
  }
  size_t pos = kLegacyMagicSize;
  Unpickler header(bytes.data(), bytes.size(), path, 0, nullptr);
  const size_t version_at = pos;
  const auto version = header.load(&pos);
  if (version->kind != Kind::Int || version->integer != kLegacyProtocolVersion) {
    throw CheckpointError(path + " at byte " + std::to_string(version_at) +
                          ": unsupported legacy protocol version (expected 1001)");
  }
  const size_t sys_info_at = pos;
  const auto sys_info = header.load(&pos);
  const auto little = sys_info->kind == Kind::Dict ? sys_info->find("little_endian") : nullptr;
  if (!little || little->kind != Kind::Bool || !little->boolean) {
    throw CheckpointError(path + " at byte " + std::to_string(sys_info_at) +
                          ": written on a big-endian machine or sys_info missing; not supported");
  }

  // Storages are created empty while the main pickle is read and filled from the trailing data,
  // which lies in this same file: what they declare in all may not exceed its size, so a pickle
  // cannot make us allocate more than the file holds.
  std::map<std::string, torch::Tensor> storages;
  size_t declared = 0;
  auto load_storage = [&](const Value& pid, size_t at) {
    const std::string where = path + " at byte " + std::to_string(at);
    const StorageId id = parse_storage_id(pid, where);
    auto& storage = storages[id.key];
    if (!storage.defined()) {
      const size_t element = c10::elementSize(id.dtype);
      if (uint64_t(id.numel) > (bytes.size() - declared) / element) {
        throw CheckpointError(where + ": storage '" + id.key + "' declares " + std::to_string(id.numel) +
                              " elements of " + std::to_string(element) + " bytes, more than the file's " +
                              std::to_string(bytes.size()) + " bytes hold");
      }
      declared += size_t(id.numel) * element;
      storage = torch::empty({id.numel}, torch::TensorOptions().dtype(id.dtype));
    }
    return Value::make_tensor(storage, Kind::Storage);
  };
  Unpickler main(bytes.data(), bytes.size(), path, 0, load_storage);
  auto root = main.load(&pos);
  const size_t keys_at = pos;
  const auto keys = header.load(&pos);
  if (keys->kind != Kind::List) {
    throw CheckpointError(path + " at byte " + std::to_string(keys_at) + ": expected the list of storage keys");
  }
  std::set<std::string> filled;
  for (const auto& key : keys->items) {
    const size_t at = pos;
    auto it = key->kind == Kind::String ? storages.find(key->text) : storages.end();
    if (it == storages.end()) {
      throw CheckpointError(path + " at byte " + std::to_string(keys_at) + ": storage key list names an unknown storage");
    }
    torch::Tensor& storage = it->second;
    const size_t nbytes = storage.nbytes();
    if (bytes.size() - pos < 8 || bytes.size() - pos - 8 < nbytes) {
      throw CheckpointError(path + " at byte " + std::to_string(at) + ": storage '" + key->text + "' needs " +
                            std::to_string(8 + nbytes) + " bytes but the file ends at byte " +
                            std::to_string(bytes.size()) + " (truncated?)");
    }
    int64_t numel = 0;
    std::memcpy(&numel, bytes.data() + pos, 8);
    if (numel != storage.numel()) {
      throw CheckpointError(path + " at byte " + std::to_string(at) + ": storage '" + key->text + "' has " +
                            std::to_string(numel) + " elements, the pickle said " + std::to_string(storage.numel()));
    }
    // An empty storage's data_ptr() is null, and memcpy with a null pointer is undefined even for 0 bytes.
    if (nbytes > 0) std::memcpy(storage.data_ptr(), bytes.data() + pos + 8, nbytes);
    pos += 8 + nbytes;
    filled.insert(key->text);
  }
  // torch.empty's memory would otherwise be read as weights.
  for (const auto& [key, storage] : storages) {
    if (!filled.count(key)) {
      throw CheckpointError(path + " at byte " + std::to_string(keys_at) + ": storage '" + key +
                            "' is used by the pickle but missing from the storage key list (no data)");
    }
  }
  return {root, path, ""};
}

std::string quoted_keys(const Value& dict) {
  std::string out;
  size_t shown = 0;
  for (const auto& [k, v] : dict.entries) {
    if (shown++ == 8) return out + ", ...";
    out += (out.empty() ? "'" : ", '") + (k->kind == Kind::String ? k->text : k->kind_name()) + "'";
  }
  return out;
}

// "of type int", or for what stands for Python code, what it names and where it is in the file
// (e.g. a malicious pickle's "Python object 'posix.system' (a call at byte 57 of record data.pkl,
// not run)"): nothing is imported or run, the value is refused where it is used.
std::string type_of(const Value& v, const Unpickled& data) {
  if (v.kind != Kind::Object && v.kind != Kind::Global) return std::string("of type ") + v.kind_name();
  const std::string place = "byte " + std::to_string(v.offset) + (data.record.empty() ? "" : " of record " + data.record);
  return "a " + v.describe() + (v.kind == Kind::Object ? " (a call at " + place + ", not run)"
                                                        : " (at " + place + ", not imported)");
}

StateDict to_state_dict(const Value& dict, const Unpickled& data, const std::string& where) {
  if (dict.kind != Kind::Dict) {
    const std::string what = dict.kind == Kind::Object || dict.kind == Kind::Global
                                 ? type_of(dict, data)
                                 : "a value " + type_of(dict, data);
    throw CheckpointError(where + ": holds " + what + ", not a dict of tensors");
  }
  StateDict out;
  for (const auto& [k, v] : dict.entries) {
    if (k->kind != Kind::String || v->kind != Kind::Tensor) {
      for (const char* wrapper : {"model", "state_dict"}) {
        // Nesting is bounded and the value has no cycles (see Unpickler::load), so this recursion is too.
        if (auto inner = dict.find(wrapper); inner && inner->kind == Kind::Dict) {
          return to_state_dict(*inner, data, where + " (entry '" + wrapper + "')");
        }
      }
      throw CheckpointError(where + ": not a state dict: entry '" + (k->kind == Kind::String ? k->text : "?") + "' is " + type_of(*v, data) +
                            ", not a tensor (keys: " + quoted_keys(dict) + ")");
    }
    out.emplace_back(k->text, v->tensor);
  }
  return out;
}

// Recursion depth is bounded by kMaxNesting; `done` converts a container shared by several parents
// (memo references make DAGs cheap to write) once instead of once per path, which could be 2^1000.
c10::IValue to_ivalue(const Value& v, const Unpickled& data, std::unordered_map<const Value*, c10::IValue>& done) {
  if (v.is_container()) {
    if (auto it = done.find(&v); it != done.end()) return it->second;
  }
  c10::IValue out;
  switch (v.kind) {
    case Kind::None: return {};
    case Kind::Bool: return v.boolean;
    case Kind::Int: return v.integer;
    case Kind::Float: return v.real;
    case Kind::String: return v.text;
    case Kind::Tensor:
    case Kind::Storage: return v.tensor;
    case Kind::Tuple: {
      std::vector<c10::IValue> items;
      for (const auto& item : v.items) items.push_back(to_ivalue(*item, data, done));
      out = c10::ivalue::Tuple::create(std::move(items));
      break;
    }
    case Kind::List: {
      c10::impl::GenericList list(c10::AnyType::get());
      for (const auto& item : v.items) list.push_back(to_ivalue(*item, data, done));
      out = list;
      break;
    }
    case Kind::Dict: {
      bool strings = true, ints = true;
      for (const auto& [k, value] : v.entries) {
        strings = strings && k->kind == Kind::String;
        ints = ints && k->kind == Kind::Int;
      }
      if (!strings && !ints) throw CheckpointError(data.path + ": dict with keys other than str or int");
      c10::impl::GenericDict dict(strings ? c10::TypePtr(c10::StringType::get()) : c10::IntType::get(),
                                  c10::AnyType::get());
      for (const auto& [k, value] : v.entries) {
        dict.insert_or_assign(to_ivalue(*k, data, done), to_ivalue(*value, data, done));
      }
      out = dict;
      break;
    }
    case Kind::Global:
    case Kind::Object:
      throw CheckpointError(data.path + ": holds " + type_of(v, data) + " that has no C++ equivalent");
  }
  done.emplace(&v, out);
  return out;
}

Unpickled unpickle_file(const std::string& path) {
  std::string head;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CheckpointError(path + ": cannot open file");
    head.resize(4);
    in.read(head.data(), 4);
    head.resize(in.gcount());
  }
  // Zip archives are read record by record from the file, not loaded whole (checkpoints are large);
  // anything but a legacy pickle is refused from its first bytes alone.
  if (head == std::string("PK\x03\x04", 4)) {
    std::shared_ptr<caffe2::serialize::ReadAdapterInterface> file;
    try {
      file = std::make_shared<caffe2::serialize::FileAdapter>(path);
    } catch (const c10::Error&) {
      throw CheckpointError(path + ": cannot open file");
    }
    return unpickle_zip(path, file);
  }
  return checkpoint_detail::unpickle_bytes(head.compare(0, 2, "\x80\x02") == 0 ? read_file(path) : head, path);
}

}  // namespace

namespace checkpoint_detail {

Unpickled unpickle_bytes(const std::string& bytes, const std::string& path) {
  if (bytes.empty()) throw CheckpointError(path + ": empty file (0 bytes), not a PyTorch checkpoint");
  if (bytes.compare(0, 4, "PK\x03\x04", 4) == 0) {
    return unpickle_zip(path, std::make_shared<BytesReadAdapter>(bytes));
  }
  if (bytes.size() >= 2 && bytes[0] == '\x80' && bytes[1] == '\x02') return unpickle_legacy(path, bytes);
  throw CheckpointError(path + ": not a PyTorch checkpoint: starts with bytes " + hex_bytes(bytes, 4) +
                        ", expected a zip archive (50 4b 03 04) or a legacy torch.save pickle (80 02)");
}

StateDict to_state_dict(const Unpickled& data) { return instseg::to_state_dict(*data.root, data, data.path); }

c10::IValue to_ivalue(const Unpickled& data) {
  std::unordered_map<const Value*, c10::IValue> done;
  return instseg::to_ivalue(*data.root, data, done);
}

}  // namespace checkpoint_detail

StateDict read_state_dict(const std::string& path) { return checkpoint_detail::to_state_dict(unpickle_file(path)); }

c10::IValue read_archive(const std::string& path) { return checkpoint_detail::to_ivalue(unpickle_file(path)); }

void save_archive(const std::string& path, const c10::IValue& value) {
  const std::vector<char> bytes = torch::pickle_save(value);
  write_bytes_atomically(path, std::string(bytes.begin(), bytes.end()));
}

// LibTorch's pickler writes the zip format that torch.load reads; its dict keeps insertion order
// and views of one storage stay shared.
void save_state_dict(const std::string& path, const StateDict& state_dict) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : state_dict) {
    if (!dict.insert(name, tensor.detach().cpu()).second) {
      throw CheckpointError(path + ": state dict to save has key '" + name + "' twice");
    }
  }
  save_archive(path, dict);
}

StateDict module_state_dict(const torch::nn::Module& module) {
  StateDict out;
  auto add_own = [&out](const torch::nn::Module& m, const std::string& prefix) {
    for (const auto& p : m.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
    for (const auto& b : m.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + b.key(), b.value());
  };
  add_own(module, "");
  // named_modules without self works for modules not owned by a shared_ptr; pre-order depth-first.
  for (const auto& child : module.named_modules("", /*include_self=*/false)) add_own(*child.value(), child.key() + ".");
  return out;
}

}  // namespace instseg
