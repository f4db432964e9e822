// Reading .pth files that Python's torch.save wrote (zip and legacy formats), writing files that
// torch.load reads, and the errors for unreadable input.
#include "instseg/checkpoint/state_dict.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "checkpoint/test_util.h"
#include "instseg/errors.h"

namespace instseg {
namespace {

using ::testing::HasSubstr;
using testing::checkpoint_error_of;
using testing::checkpoint_ref;

// Every key in the file's order, every tensor equal bit for bit to what Python saved.
void expect_matches_reference(const StateDict& sd, const std::string& stem) {
  const auto keys = testing::read_lines(checkpoint_ref(stem + ".keys.txt"));
  const auto sums = testing::load_tensors(checkpoint_ref(stem + ".sums.pt"));
  ASSERT_EQ(sd.size(), keys.size()) << stem;
  for (size_t i = 0; i < sd.size(); ++i) {
    ASSERT_EQ(sd[i].first, keys[i]) << stem << " entry " << i;
    EXPECT_TRUE(torch::equal(testing::checksum(sd[i].second), sums.at(keys[i]))) << stem << ": " << keys[i];
  }
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = checkpoint_ref("tmp_" + name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

// The legacy file holds the same tensors; comparing it with the checked zip read is cheaper than summing.
void expect_same(const StateDict& a, const StateDict& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(a[i].second.scalar_type() == b[i].second.scalar_type() && torch::equal(a[i].second, b[i].second))
        << a[i].first;
  }
}

TEST(ReadStateDict, MaskRcnnV1InZipAndLegacyFormats) {
  const auto zip = read_state_dict(checkpoint_ref("maskrcnn_v1.pth"));
  expect_matches_reference(zip, "maskrcnn_v1");
  expect_same(read_state_dict(checkpoint_ref("maskrcnn_v1_legacy.pth")), zip);
}

TEST(ReadStateDict, MaskRcnnV2InZipAndLegacyFormats) {
  const auto zip = read_state_dict(checkpoint_ref("maskrcnn_v2.pth"));
  expect_matches_reference(zip, "maskrcnn_v2");
  expect_same(read_state_dict(checkpoint_ref("maskrcnn_v2_legacy.pth")), zip);
}

TEST(ReadStateDict, ImageNetResNet50) {
  expect_matches_reference(read_state_dict(checkpoint_ref("resnet50.pth")), "resnet50");
}

TEST(ReadStateDict, DtypesAndViewsSharingStorage) {
  const auto plain = testing::load_tensors(checkpoint_ref("mixed_plain.pt"));  // LibTorch's own reader
  for (const char* file : {"mixed.pth", "mixed_legacy.pth"}) {
    const auto sd = read_state_dict(checkpoint_ref(file));
    expect_matches_reference(sd, "mixed");
    std::map<std::string, torch::Tensor> by_name(sd.begin(), sd.end());
    for (const auto& [name, expected] : plain) {
      const auto& got = by_name.at(name);
      EXPECT_EQ(got.scalar_type(), expected.scalar_type()) << file << ": " << name;
      EXPECT_TRUE(torch::equal(got, expected)) << file << ": " << name;
    }
    // Views keep their layout and still alias one storage, as in Python.
    const auto& base = by_name.at("base");
    EXPECT_TRUE(by_name.at("base_t").is_alias_of(base)) << file;
    EXPECT_TRUE(by_name.at("base_slice").is_alias_of(base)) << file;
    EXPECT_EQ(by_name.at("base_t").strides(), (std::vector<int64_t>{1, 6})) << file;
    EXPECT_EQ(by_name.at("base_slice").storage_offset(), 8) << file;
    EXPECT_EQ(by_name.at("half_col").strides(), (std::vector<int64_t>{3})) << file;
    EXPECT_EQ(by_name.at("int64")[2][3].item<int64_t>(), 6 * 1000003) << file;
    EXPECT_EQ(by_name.at("scalar").dim(), 0) << file;
  }
}

TEST(ReadStateDict, TakesTheStateDictOutOfTrainingWrappers) {
  // wrapped_model.pth also pickles an argparse.Namespace, which must not get in the way.
  expect_matches_reference(read_state_dict(checkpoint_ref("wrapped_model.pth")), "mixed");
  expect_matches_reference(read_state_dict(checkpoint_ref("wrapped_state_dict.pth")), "mixed");
}

TEST(ReadStateDict, EmptyTextAndMissingFilesAreRejected) {
  const auto empty = write_temp("empty.pth", "");
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(empty); }), empty + ": empty file (0 bytes), not a PyTorch checkpoint");
  const auto text = checkpoint_ref("notes.txt");
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(text); }),
              HasSubstr(text + ": not a PyTorch checkpoint: starts with bytes 74 68 65 73"));
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict("/nonexistent/model.pth"); }), "/nonexistent/model.pth: cannot open file");
}

TEST(ReadStateDict, TruncatedZipIsRejected) {
  const auto bytes = read_bytes(checkpoint_ref("mixed.pth"));
  for (size_t cut : {size_t(10), size_t(100), bytes.size() / 2, bytes.size() - 1}) {
    const auto path = write_temp("cut_zip.pth", bytes.substr(0, cut));
    EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }),
                HasSubstr(path + ": not a readable zip archive (truncated or corrupt?)"))
        << "cut at " << cut;
  }
}

TEST(ReadStateDict, TruncatedLegacyFileNamesTheByteOffset) {
  const auto bytes = read_bytes(checkpoint_ref("mixed_legacy.pth"));
  const auto path = write_temp("cut_legacy.pth", bytes.substr(0, 9));
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(path); }),
            path + ": truncated: 9 bytes, shorter than the legacy torch.save magic number");
  // Inside the main pickle (which starts at byte 137, after magic, version and sys_info).
  write_temp("cut_legacy.pth", bytes.substr(0, 300));
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }), HasSubstr("truncated: opcode needs"));
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }), HasSubstr("data ends at byte 300"));
  // Inside the raw storage bytes at the end.
  write_temp("cut_legacy.pth", bytes.substr(0, bytes.size() - 3));
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }),
              HasSubstr("but the file ends at byte " + std::to_string(bytes.size() - 3) + " (truncated?)"));
}

TEST(ReadStateDict, UnknownOpcodeAndWrongMagicNameTheByte) {
  auto bytes = read_bytes(checkpoint_ref("mixed_legacy.pth"));
  ASSERT_EQ(bytes[137], '\x80');  // PROTO of the main pickle
  ASSERT_EQ(bytes[139], 'c');     // GLOBAL collections.OrderedDict
  bytes[139] = '\xff';
  const auto path = write_temp("bad_opcode.pth", bytes);
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(path); }), path + " at byte 139: unknown pickle opcode 0xff");
  bytes[5] ^= 1;  // inside the magic number
  write_temp("bad_opcode.pth", bytes);
  EXPECT_THAT(checkpoint_error_of([&] { read_state_dict(path); }), HasSubstr(path + " at byte 0: a pickle but not a torch.save file"));
}

TEST(ReadStateDict, NonTensorEntriesAreNotAStateDict) {
  const auto path = checkpoint_ref("tmp_not_state_dict.pth");
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("conv.weight", torch::ones({2}));
  dict.insert("epoch", int64_t(3));
  save_archive(path, dict);
  EXPECT_EQ(checkpoint_error_of([&] { read_state_dict(path); }),
            path + ": not a state dict: entry 'epoch' is of type int, not a tensor "
                   "(keys: 'conv.weight', 'epoch')");
}

TEST(SaveStateDict, PythonLoadsItIntoTorchvisionAndWeReadItBack) {
  const auto original = checkpoint_ref("maskrcnn_v1.pth");
  const auto written = checkpoint_ref("tmp_roundtrip_v1.pth");
  const auto sd = read_state_dict(original);
  save_state_dict(written, sd);
  EXPECT_FALSE(std::filesystem::exists(written + ".tmp"));
  const std::string cmd = std::string(INSTSEG_PYTHON) + " " +
                          testing::source_path("tests/reference/checkpoint_roundtrip.py") + " state_dict " + written +
                          " " + original + " v1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  expect_same(read_state_dict(written), sd);
}

TEST(SaveStateDict, KeepsDtypesAndSharedViews) {
  const auto original = checkpoint_ref("mixed.pth");
  const auto written = checkpoint_ref("tmp_roundtrip_mixed.pth");
  save_state_dict(written, read_state_dict(original));
  const std::string cmd = std::string(INSTSEG_PYTHON) + " " +
                          testing::source_path("tests/reference/checkpoint_roundtrip.py") + " state_dict " + written +
                          " " + original;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto back = read_state_dict(written);
  expect_matches_reference(back, "mixed");
  EXPECT_TRUE(back[1].second.is_alias_of(back[0].second));  // base_t still views base
}

TEST(SaveArchive, TrainingStateRoundTripsThroughPythonAndBack) {
  c10::impl::GenericDict optimizer(c10::StringType::get(), c10::AnyType::get());
  optimizer.insert("momentum", c10::List<torch::Tensor>({torch::arange(6.0).reshape({2, 3}), torch::ones({4})}));
  c10::impl::GenericDict state(c10::StringType::get(), c10::AnyType::get());
  state.insert("iteration", int64_t(1234));
  state.insert("lr", 0.02);
  state.insert("name", std::string("mask_rcnn"));
  state.insert("resume", true);
  state.insert("note", c10::IValue());
  state.insert("optimizer", optimizer);
  const auto path = checkpoint_ref("tmp_archive.pth");
  save_archive(path, state);
  const std::string cmd = std::string(INSTSEG_PYTHON) + " " +
                          testing::source_path("tests/reference/checkpoint_roundtrip.py") + " archive " + path;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;

  const auto back = read_archive(path).toGenericDict();
  EXPECT_EQ(back.at("iteration").toInt(), 1234);
  EXPECT_EQ(back.at("lr").toDouble(), 0.02);
  EXPECT_EQ(back.at("name").toStringRef(), "mask_rcnn");
  EXPECT_TRUE(back.at("resume").toBool());
  EXPECT_TRUE(back.at("note").isNone());
  const auto momentum = back.at("optimizer").toGenericDict().at("momentum").toList();
  ASSERT_EQ(momentum.size(), 2u);
  EXPECT_TRUE(torch::equal(momentum.get(0).toTensor(), torch::arange(6.0).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(momentum.get(1).toTensor(), torch::ones({4})));
}

TEST(SaveArchive, PythonObjectsHaveNoCppValue) {
  const auto path = checkpoint_ref("wrapped_model.pth");
  // Named with where the call is in the pickle; nothing was run.
  EXPECT_THAT(checkpoint_error_of([&] { read_archive(path); }),
              HasSubstr(path + ": holds a Python object 'argparse.Namespace' (a call at byte "));
  EXPECT_THAT(checkpoint_error_of([&] { read_archive(path); }),
              HasSubstr(" of record data.pkl, not run) that has no C++ equivalent"));
}

}  // namespace
}  // namespace instseg
