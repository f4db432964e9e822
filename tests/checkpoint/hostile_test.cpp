// Hostile .pth files, written byte by byte: each must end in one CheckpointError naming the file
// and the byte, never a crash, undefined behaviour, a leak or memory the file does not justify.
// Every case runs in the legacy format and in the zip format, through the public readers.
#include <caffe2/serialize/inline_container.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "checkpoint/pickle.h"
#include "checkpoint/reader.h"
#include "checkpoint/test_util.h"
#include "instseg/checkpoint/describe.h"
#include "instseg/checkpoint/state_dict.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

using ::testing::HasSubstr;
using namespace std::string_literals;
using testing::checkpoint_error_of;
using testing::checkpoint_ref;

// Legacy format: magic number, protocol version 1001, sys_info {'little_endian': True}, the main
// pickle (starting at byte kLegacyMain), the list of storage keys, then each storage's data.
const std::string kLegacyHeader = std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e", 15) +
                                  std::string("\x80\x02M\xe9\x03.", 6) +
                                  std::string("\x80\x02}X\x0d\x00\x00\x00little_endian\x88s.", 24);
const size_t kLegacyMain = kLegacyHeader.size();  // 45
const std::string kNoStorages("\x80\x02].", 4);

std::string legacy(const std::string& pickle, const std::string& storage_keys = kNoStorages,
                   const std::string& data = "") {
  return kLegacyHeader + pickle + storage_keys + data;
}

std::string write_legacy(const std::string& name, const std::string& pickle, const std::string& keys = kNoStorages,
                         const std::string& data = "") {
  const std::string path = checkpoint_ref("tmp_hostile_" + name + "_legacy.pth");
  const std::string bytes = legacy(pickle, keys, data);
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

// Zip format as torch.save writes it: records <stem>/data.pkl, <stem>/data/<key>, <stem>/version.
std::string write_zip(const std::string& name, const std::string& pickle,
                      const std::vector<std::pair<std::string, std::string>>& storages = {}) {
  const std::string path = checkpoint_ref("tmp_hostile_" + name + "_zip.pth");
  caffe2::serialize::PyTorchStreamWriter writer(path);
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& [key, bytes] : storages) writer.writeRecord("data/" + key, bytes.data(), bytes.size());
  writer.writeEndOfFile();
  return path;
}

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string i64(int64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string str(const std::string& s) { return "X" + u32(uint32_t(s.size())) + s; }  // BINUNICODE
std::string long8(int64_t v) { return "\x8a\x08" + i64(v); }                          // LONG1, 8 bytes
std::string repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// Deeper than the main thread's 8 MB stack survived when the value was freed recursively.
constexpr size_t kDeep = 150000;

std::string nested_lists(size_t n) { return "\x80\x02" + std::string(n, '(') + "]" + std::string(n, 'l') + "."; }
std::string nested_tuples(size_t n) { return "\x80\x02)" + std::string(n, '\x85') + "."; }
std::string nested_dicts(size_t n) { return "\x80\x02" + repeat("(K\x00"s, n) + "}" + std::string(n, 'd') + "."; }

// n empty lists in the memo, then list i+1 gets list i appended, last pair first: while each
// APPEND runs, the list receiving a child sits one level deep, so only the finished value is deep.
std::string memo_chain(size_t n) {
  std::string p = "\x80\x02";
  for (size_t i = 0; i < n; ++i) p += "]r" + u32(uint32_t(i)) + "0";
  for (size_t i = n - 1; i-- > 0;) p += "j" + u32(uint32_t(i + 1)) + "j" + u32(uint32_t(i)) + "a0";
  return p + "j" + u32(uint32_t(n - 1)) + ".";
}

TEST(HostilePickle, DeepNestingIsAnErrorNotAStackOverflow) {
  const std::string limit = "containers nested deeper than 1000 levels";
  for (const auto& [name, pickle] : std::vector<std::pair<std::string, std::string>>{
           {"lists", nested_lists(kDeep)}, {"tuples", nested_tuples(kDeep)}, {"dicts", nested_dicts(kDeep)},
           {"memo_chain", memo_chain(kDeep)}}) {
    const auto legacy_path = write_legacy("deep_" + name, pickle);
    const auto zip_path = write_zip("deep_" + name, pickle);
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(legacy_path); }), HasSubstr(legacy_path + " at byte ")) << name;
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(legacy_path); }), HasSubstr(limit)) << name;
    EXPECT_THAT(checkpoint_error_of([&] { read_archive(legacy_path); }), HasSubstr(limit)) << name;
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(zip_path); }), HasSubstr(zip_path + " (record data.pkl) at byte "))
        << name;
    EXPECT_THAT(checkpoint_error_of([&] { read_archive(zip_path); }), HasSubstr(limit)) << name;
  }
  // The byte is the container that is one level too deep: lists are made innermost first, at the
  // 'l' opcodes after kDeep MARKs and one EMPTY_LIST; the 1000th list from the outside is made by
  // the (kDeep - 1000)th of them.
  const auto path = write_legacy("deep_lists", nested_lists(kDeep));
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }),
              HasSubstr(path + " at byte " + std::to_string(kLegacyMain + 2 + kDeep + 1 + (kDeep - 1000) - 1) + ": " +
                        limit));
}

TEST(HostilePickle, NestingUpToTheLimitReads) {
  // 1000 lists: the outermost and 999 inside it.
  const auto path = write_zip("limit", nested_lists(999));
  const auto value = read_archive(path).toList();
  ASSERT_EQ(value.size(), 1u);
  const auto one_more = write_zip("limit_plus_one", nested_lists(1000));
  EXPECT_THAT(checkpoint_error_of([&] { read_archive(one_more); }), HasSubstr("nested deeper than 1000 levels"));
}

TEST(HostilePickle, ReferenceCyclesAreRefused) {
  // l = []; l.append(l)   and   d = {}; d['model'] = d (read_state_dict follows 'model' entries).
  const std::string list_cycle("\x80\x02]q\x00h\x00" "a.", 9);
  const std::string dict_cycle = std::string("\x80\x02}q\x00", 5) + str("model") + std::string("h\x00s.", 4);
  for (const auto& [pickle, kind] : {std::pair{list_cycle, "list"}, std::pair{dict_cycle, "dict"}}) {
    const auto legacy_path = write_legacy("cycle", pickle);
    const auto zip_path = write_zip("cycle", pickle);
    const std::string what = std::string(": a ") + kind + " made here contains itself (a reference cycle); checkpoints have none";
    EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(legacy_path); }),
              legacy_path + " at byte " + std::to_string(kLegacyMain + 2) + what);
    EXPECT_EQ(checkpoint_error_of([&] { read_archive(legacy_path); }),
              legacy_path + " at byte " + std::to_string(kLegacyMain + 2) + what);
    EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(zip_path); }), zip_path + " (record data.pkl) at byte 2" + what);
    EXPECT_EQ(checkpoint_error_of([&] { read_archive(zip_path); }), zip_path + " (record data.pkl) at byte 2" + what);
  }
}

TEST(HostilePickle, ACycleLeftOffTheResultIsFreed) {
  // A self-containing list is made and popped; the result is an empty dict. (LeakSanitizer builds
  // check that the list was freed.)
  const std::string pickle("\x80\x02]q\x00h\x00" "a0}.", 11);
  EXPECT_EQ(read_archive(write_legacy("dropped_cycle", pickle)).toGenericDict().size(), 0u);
  EXPECT_EQ(read_archive(write_zip("dropped_cycle", pickle)).toGenericDict().size(), 0u);
}

TEST(HostilePickle, SharedSubtreesAreConvertedOnce) {
  // l0 = []; l(i+1) = [l(i), l(i)]: 64 levels are 2^64 paths but 65 lists.
  std::string pickle = "\x80\x02]";
  for (int i = 0; i < 64; ++i) pickle += std::string("q\x00" "0(h\x00h\x00l", 9);
  pickle += ".";
  for (const auto& path : {write_legacy("dag", pickle), write_zip("dag", pickle)}) {
    auto list = read_archive(path).toList();
    for (int i = 0; i < 64; ++i) {
      ASSERT_EQ(list.size(), 2u);
      list = list.get(0).toList();
    }
    EXPECT_EQ(list.size(), 0u);
  }
}

TEST(HostilePickle, ARefusedCallableIsNamedWithItsByte) {
  // posix.system('touch /tmp/instseg_pwned') as the whole file, and as an entry of a dict.
  const std::string call = "cposix\nsystem\n" + str("touch /tmp/instseg_pwned") + "\x85R";
  const std::string alone = "\x80\x02" + call + ".";
  const size_t reduce_at = 2 + 14 + 5 + 24 + 1;  // PROTO, GLOBAL, BINUNICODE, TUPLE1
  auto legacy_path = write_legacy("callable", alone);
  auto zip_path = write_zip("callable", alone);
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(legacy_path); }),
            legacy_path + ": holds a Python object 'posix.system' (a call at byte " +
                std::to_string(kLegacyMain + reduce_at) + ", not run), not a dict of tensors");
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(zip_path); }),
            zip_path + ": holds a Python object 'posix.system' (a call at byte " + std::to_string(reduce_at) +
                " of record data.pkl, not run), not a dict of tensors");
  EXPECT_EQ(checkpoint_error_of([&] { read_archive(zip_path); }),
            zip_path + ": holds a Python object 'posix.system' (a call at byte " + std::to_string(reduce_at) +
                " of record data.pkl, not run) that has no C++ equivalent");

  const std::string in_dict = "\x80\x02}" + str("weight") + call + "s.";
  legacy_path = write_legacy("callable_entry", in_dict);
  zip_path = write_zip("callable_entry", in_dict);
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(legacy_path); }),
            legacy_path + ": not a state dict: entry 'weight' is a Python object 'posix.system' (a call at byte " +
                std::to_string(kLegacyMain + 3 + 11 + reduce_at - 2) + ", not run), not a tensor (keys: 'weight')");
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(zip_path); }),
              HasSubstr("entry 'weight' is a Python object 'posix.system' (a call at byte " +
                        std::to_string(3 + 11 + reduce_at - 2) + " of record data.pkl, not run)"));
  // A callable that is only referenced, never called.
  const std::string reference = "\x80\x02}" + str("f") + "cbuiltins\neval\ns.";
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(write_zip("global", reference)); }),
              HasSubstr("entry 'f' is a reference to Python 'builtins.eval' (at byte 9 of record data.pkl, "
                        "not imported), not a tensor"));
  std::ifstream pwned("/tmp/instseg_pwned");
  EXPECT_FALSE(pwned.good());
}

// {'w': _rebuild_tensor_v2(storage('0', FloatStorage, numel), 0, size, stride)}.
std::string tensor_pickle(int64_t numel, const std::string& size, const std::string& stride, int64_t offset = 0) {
  return "\x80\x02}" + str("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" + str("storage") + "ctorch\nFloatStorage\n" +
         str("0") + str("cpu") + long8(numel) + "NtQ" + long8(offset) + size + stride + "tRs.";
}
std::string float_data(int64_t numel) { return i64(numel) + std::string(size_t(numel) * 4, '\0'); }
const std::string kOneStorageKey = "\x80\x02(" + str("0") + "l.";

TEST(HostilePickle, TensorViewArithmeticCannotOverflow) {
  // (2^62 + 1 - 1) * 4 wraps to 0 in int64: the view looked inside a 4-element storage.
  const std::string wraps = tensor_pickle(4, "(" + long8((int64_t(1) << 62) + 1) + "t", "(K\x04t");
  // The element count 2^40 * 2^40 overflows with stride 0 (every element the same one).
  const std::string count = tensor_pickle(4, "(" + long8(int64_t(1) << 40) + long8(int64_t(1) << 40) + "t",
                                          "(K\x00K\x00t"s);
  // An empty tensor whose other dimension reaches past 2^63.
  const std::string empty = tensor_pickle(4, "(K\x00"s + long8(int64_t(1) << 62) + "t", "(K\x01K\x04t");
  for (const auto& pickle : {wraps, count, empty}) {
    const auto legacy_path = write_legacy("overflow", pickle, kOneStorageKey, float_data(4));
    const auto zip_path = write_zip("overflow", pickle, {{"0", std::string(16, '\0')}});
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(legacy_path); }),
                HasSubstr("tensor view with size and stride beyond 64-bit range"));
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(zip_path); }),
                HasSubstr(zip_path + " (record data.pkl) at byte "));
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(zip_path); }),
                HasSubstr("tensor view with size and stride beyond 64-bit range"));
  }
  // In range but past the end, and a good view next to it.
  const auto past = write_zip("past_end", tensor_pickle(4, "(K\x02t", "(K\x04t"), {{"0", std::string(16, '\0')}});
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(past); }),
              HasSubstr("tensor view (offset 0, last element 4) exceeds its storage of 4 elements"));
  const auto good = write_zip("good_view", tensor_pickle(4, "(K\x02t", "(K\x02t", 1), {{"0", std::string(16, '\0')}});
  EXPECT_EQ(read_state_dict(good).at(0).second.sizes(), (std::vector<int64_t>{2}));
}

TEST(HostilePickle, LegacyStorageSizesAreCheckedBeforeAllocating) {
  const std::string w = "(K\x01t";
  // 2^40 floats (4 TiB), and 2^61 floats whose byte count would wrap, declared by a tiny file.
  for (int64_t numel : {int64_t(1) << 40, int64_t(1) << 61}) {
    const auto path = write_legacy("huge_storage", tensor_pickle(numel, w, w), kOneStorageKey, float_data(1));
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }),
                HasSubstr("storage '0' declares " + std::to_string(numel) + " elements of 4 bytes, more than the file's"));
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }), HasSubstr(path + " at byte "));
  }
  const auto negative = write_legacy("negative_storage", tensor_pickle(-1, w, w), kOneStorageKey, float_data(1));
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(negative); }), HasSubstr("storage '0' declares -1 elements"));
  // Storages that several keys declare in all may not exceed the file either.
  std::string many = "\x80\x02}";
  for (int i = 0; i < 64; ++i) {
    many += str("w" + std::to_string(i)) + "ctorch._utils\n_rebuild_tensor_v2\n((" + str("storage") +
            "ctorch\nFloatStorage\n" + str(std::to_string(i)) + str("cpu") + long8(1000) + "NtQK\x00(K\x01t(K\x01ttRs"s;
  }
  const auto many_path = write_legacy("many_storages", many + ".", kNoStorages, std::string(64 * 1000, '\0'));
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(many_path); }), HasSubstr("elements of 4 bytes, more than the file's"));
}

TEST(HostilePickle, LegacyStorageWithoutDataIsAnError) {
  // The pickle uses storage '0' but the key list is empty: its memory was never filled.
  const auto path = write_legacy("unfilled", tensor_pickle(4, "(K\x04t", "(K\x01t"), kNoStorages, "");
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }),
              HasSubstr("storage '0' is used by the pickle but missing from the storage key list (no data)"));
  // The same with its data reads.
  const auto good = write_legacy("filled", tensor_pickle(4, "(K\x04t", "(K\x01t"), kOneStorageKey, float_data(4));
  EXPECT_EQ(read_state_dict(good).at(0).second.numel(), 4);
}

TEST(HostilePickle, LegacyEmptyStorageReads) {
  // An empty storage's data pointer is null: copying its 0 bytes was a null memcpy (UBSan;
  // fuzz/findings/checkpoint-1.pth).
  const auto path =
      write_legacy("empty_storage", tensor_pickle(0, "(K\x00t"s, "(K\x01t"), kOneStorageKey, float_data(0));
  const auto sd = read_state_dict(path);
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_EQ(sd[0].second.numel(), 0);
}

TEST(HostilePickle, ARawStorageIsNotATensor) {
  // {'w': storage} without _rebuild_tensor_v2, and a rebuilt tensor passed where a storage goes.
  const std::string raw = "\x80\x02}" + str("w") + "(" + str("storage") + "ctorch\nFloatStorage\n" + str("0") +
                          str("cpu") + "K\x04NtQs.";
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(write_zip("raw_storage", raw, {{"0", std::string(16, '\0')}})); }),
              HasSubstr("entry 'w' is of type storage, not a tensor"));
  // A view of 1000 elements with stride 0 over 4 floats, then viewed again as if it were a storage
  // of 1000 elements: the second view would read past the 4 floats.
  const std::string tensor_as_storage =
      "\x80\x02}" + str("w") + "ctorch._utils\n_rebuild_tensor_v2\nq\x00(h\x00(("s + str("storage") +
      "ctorch\nFloatStorage\n" + str("0") + str("cpu") + "K\x04NtQK\x00(M\xe8\x03t(K\x00ttR"s +
      "K\x00(M\xe8\x03t(K\x01ttRs."s;
  EXPECT_THAT(checkpoint_error_of([&] {
                read_state_dict(write_zip("tensor_as_storage", tensor_as_storage, {{"0", std::string(16, '\0')}}));
              }),
              HasSubstr("torch._utils._rebuild_tensor_v2 called with unexpected arguments"));
}

TEST(HostilePickle, ManyDictKeysAreLinearAndRepeatedKeysReplace) {
  // 300,000 SETITEMS keys: quadratic duplicate checks took minutes; the last 'k0' replaces the first.
  constexpr int kKeys = 300000;
  std::string pickle = "\x80\x02}(";
  for (int i = 0; i < kKeys; ++i) pickle += str("k" + std::to_string(i)) + "K\x01";
  pickle += str("k0") + "K\x02u.";
  const auto start = std::chrono::steady_clock::now();
  const auto dict = read_archive(write_zip("many_keys", pickle)).toGenericDict();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0);
  EXPECT_EQ(dict.size(), size_t(kKeys));
  EXPECT_EQ(dict.at("k0").toInt(), 2);
  EXPECT_EQ(dict.begin()->key().toStringRef(), "k0");
}

TEST(HostilePickle, OpcodeCountIsBounded) {
  // 5 million DUPs of one None: each costs a stack slot; past 2^22 opcodes the pickle is refused.
  const std::string pickle = "\x80\x02N" + std::string(5000000, '2') + ".";
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(write_zip("opcodes", pickle)); }),
              HasSubstr("(record data.pkl) at byte 4194305: pickle runs more than 4194304 opcodes"));
}

TEST(HostilePickle, CorruptZipInMemoryIsOneClearError) {
  // The in-memory entry point (the fuzz harness's) with 4 bytes overwritten at every 7th offset:
  // zip offsets and sizes come from the file and must never make the reader leave its bytes.
  const std::string pickle = "\x80\x02}" + str("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" + str("storage") +
                             "ctorch\nFloatStorage\n" + str("0") + str("cpu") + "K\x04NtQK\x01(K\x02t(K\x01ttRs.";
  std::ifstream in(write_zip("in_memory", pickle, {{"0", std::string(16, '\1')}}), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(checkpoint_detail::to_state_dict(checkpoint_detail::unpickle_bytes(bytes, "mem.pth")).at(0).second.numel(), 2);
  int refused = 0;
  for (size_t i = 0; i + 4 <= bytes.size(); i += 7) {
    std::string bad = bytes;
    for (size_t k = 0; k < 4; ++k) bad[i + k] = '\xff';
    try {
      checkpoint_detail::to_ivalue(checkpoint_detail::unpickle_bytes(bad, "mem.pth"));
    } catch (const CheckpointError& e) {
      EXPECT_THAT(e.what(), HasSubstr("mem.pth")) << "bytes " << i;
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(PickleValue, FreesADeepChainWithoutRecursion) {
  // The reader unlinks what it made before dropping it; this checks the destructor on its own:
  // a million lists, each holding the next and a shared leaf list.
  using checkpoint_detail::Value;
  auto shared = Value::make(Value::Kind::List);
  auto root = Value::make(Value::Kind::List);
  Value* tail = root.get();
  for (int i = 0; i < 1000000; ++i) {
    auto next = Value::make(Value::Kind::List);
    tail->items = {shared, next};
    tail = next.get();
  }
  root.reset();
  EXPECT_EQ(shared.use_count(), 1);
}

TEST(DescribeCheckpointHostile, ClassifierOfTheWrongShapeIsACheckpointError) {
  StateDict sd = {{"roi_heads.box_predictor.cls_score.weight", torch::zeros({})},
                  {"roi_heads.box_head.fc6.weight", torch::zeros({1})}};
  EXPECT_EQ(checkpoint_error_of([&] { describe_checkpoint(sd, "x.pth"); }),
            "x.pth: 'roi_heads.box_predictor.cls_score.weight' has shape [], expected [classes, features]");
  // A layer3 block number too long for an int is not a block.
  StateDict resnet = {{"conv1.weight", torch::Tensor()}, {"layer1.0.conv1.weight", torch::Tensor()},
                      {"fc.weight", torch::zeros({10, 2})}};
  for (int i = 0; i < 2; ++i) resnet.emplace_back("layer3." + std::to_string(i) + ".conv1.weight", torch::Tensor());
  resnet.emplace_back("layer3.99999999999999999999.conv1.weight", torch::Tensor());
  EXPECT_EQ(describe_checkpoint(resnet, "r.pth").depth, 18);
}

}  // namespace
}  // namespace instseg
