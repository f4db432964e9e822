#include "instseg/checkpoint/state_dict.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include <cstring>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>

#include "checkpoint/pickle.h"
#include "instseg/common/atomic_file.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

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
  return {storage_dtype(*f[1], where), f[2]->text, f[4]->integer};
}

ValuePtr unpickle_zip(const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    why = why.substr(0, why.find('\n'));
    throw CheckpointError(path + ": not a readable zip archive (truncated or corrupt?): " + why);
  }
  if (!zip->hasRecord("data.pkl")) {
    if (zip->hasRecord("constants.pkl")) {
      throw CheckpointError(path + ": is a TorchScript archive (torch.jit.save), not a torch.save file");
    }
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
  std::map<std::string, torch::Tensor> storages;
  auto load_storage = [&](const Value& pid) {
    const StorageId id = parse_storage_id(pid, path + " (record data.pkl)");
    auto& storage = storages[id.key];
    if (!storage.defined()) {
      const std::string record = "data/" + id.key;
      if (!zip->hasRecord(record)) throw CheckpointError(path + ": record '" + record + "' is missing");
      auto [data, nbytes] = get(record);
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
    return Value::make_tensor(storage);
  };
  auto [pkl, pkl_size] = get("data.pkl");
  size_t pos = 0;
  Unpickler unpickler(static_cast<const char*>(pkl.get()), pkl_size, path + " (record data.pkl)", 0, load_storage);
  return unpickler.load(&pos);
}

ValuePtr unpickle_legacy(const std::string& path, const std::string& bytes) {
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

  // Storages are created empty while the main pickle is read and filled from the trailing data.
  std::map<std::string, torch::Tensor> storages;
  auto load_storage = [&](const Value& pid) {
    const StorageId id = parse_storage_id(pid, path);
    auto& storage = storages[id.key];
    if (!storage.defined()) storage = torch::empty({id.numel}, torch::TensorOptions().dtype(id.dtype));
    return Value::make_tensor(storage);
  };
  Unpickler main(bytes.data(), bytes.size(), path, 0, load_storage);
  const auto root = main.load(&pos);
  const size_t keys_at = pos;
  const auto keys = header.load(&pos);
  if (keys->kind != Kind::List) {
    throw CheckpointError(path + " at byte " + std::to_string(keys_at) + ": expected the list of storage keys");
  }
  for (const auto& key : keys->items) {
    const size_t at = pos;
    auto it = key->kind == Kind::String ? storages.find(key->text) : storages.end();
    if (it == storages.end()) {
      throw CheckpointError(path + " at byte " + std::to_string(keys_at) + ": storage key list names an unknown storage");
    }
    torch::Tensor& storage = it->second;
    const size_t nbytes = storage.nbytes();
    if (bytes.size() - pos < 8 + nbytes) {
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
    std::memcpy(storage.data_ptr(), bytes.data() + pos + 8, nbytes);
    pos += 8 + nbytes;
  }
  return root;
}

ValuePtr unpickle_file(const std::string& path) {
  std::string head;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CheckpointError(path + ": cannot open file");
    head.resize(4);
    in.read(head.data(), 4);
    head.resize(in.gcount());
  }
  if (head.empty()) throw CheckpointError(path + ": empty file (0 bytes), not a PyTorch checkpoint");
  if (head == std::string("PK\x03\x04", 4)) return unpickle_zip(path);
  if (head.size() >= 2 && head[0] == '\x80' && head[1] == '\x02') return unpickle_legacy(path, read_file(path));
  throw CheckpointError(path + ": not a PyTorch checkpoint: starts with bytes " + hex_bytes(head, 4) +
                        ", expected a zip archive (50 4b 03 04) or a legacy torch.save pickle (80 02)");
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

StateDict to_state_dict(const Value& dict, const std::string& where) {
  if (dict.kind != Kind::Dict) {
    throw CheckpointError(where + ": holds a value of type " + std::string(dict.kind_name()) + ", not a dict of tensors");
  }
  StateDict out;
  for (const auto& [k, v] : dict.entries) {
    if (k->kind != Kind::String || v->kind != Kind::Tensor) {
      for (const char* wrapper : {"model", "state_dict"}) {
        if (auto inner = dict.find(wrapper); inner && inner->kind == Kind::Dict) {
          return to_state_dict(*inner, where + " (entry '" + wrapper + "')");
        }
      }
      throw CheckpointError(where + ": not a state dict: entry '" + (k->kind == Kind::String ? k->text : "?") +
                            "' is of type " + v->kind_name() + ", not a tensor (keys: " + quoted_keys(dict) + ")");
    }
    out.emplace_back(k->text, v->tensor);
  }
  return out;
}

c10::IValue to_ivalue(const Value& v, const std::string& path) {
  switch (v.kind) {
    case Kind::None: return {};
    case Kind::Bool: return v.boolean;
    case Kind::Int: return v.integer;
    case Kind::Float: return v.real;
    case Kind::String: return v.text;
    case Kind::Tensor: return v.tensor;
    case Kind::Tuple: {
      std::vector<c10::IValue> items;
      for (const auto& item : v.items) items.push_back(to_ivalue(*item, path));
      return c10::ivalue::Tuple::create(std::move(items));
    }
    case Kind::List: {
      c10::impl::GenericList list(c10::AnyType::get());
      for (const auto& item : v.items) list.push_back(to_ivalue(*item, path));
      return list;
    }
    case Kind::Dict: {
      bool strings = true, ints = true;
      for (const auto& [k, value] : v.entries) {
        strings = strings && k->kind == Kind::String;
        ints = ints && k->kind == Kind::Int;
      }
      if (!strings && !ints) throw CheckpointError(path + ": dict with keys other than str or int");
      c10::impl::GenericDict dict(strings ? c10::TypePtr(c10::StringType::get()) : c10::IntType::get(),
                                  c10::AnyType::get());
      for (const auto& [k, value] : v.entries) dict.insert_or_assign(to_ivalue(*k, path), to_ivalue(*value, path));
      return dict;
    }
    case Kind::Global:
    case Kind::Object: break;
  }
  throw CheckpointError(path + ": holds a Python object '" + v.text + "' that has no C++ equivalent");
}

}  // namespace

StateDict read_state_dict(const std::string& path) { return to_state_dict(*unpickle_file(path), path); }

c10::IValue read_archive(const std::string& path) { return to_ivalue(*unpickle_file(path), path); }

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
