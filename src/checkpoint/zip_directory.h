#pragma once
// The zip format's directory, checked before LibTorch reads any record of a .pth file. LibTorch's
// PyTorchStreamReader::getRecord allocates whatever uncompressed size the directory declares and
// inflates compressed records, so a small hostile file could make it allocate and fill ~1000 times
// its size (or claim terabytes). torch.save stores every record uncompressed, once, inside the file:
// files that keep to that are all this accepts, and then the records together are at most the file.
// Internal to instseg_checkpoint.
#include <caffe2/serialize/read_adapter_interface.h>

#include <cstdint>
#include <string>

namespace instseg::checkpoint_detail {

// Throws CheckpointError naming `path`, the record and the byte at fault unless the archive's end of
// central directory record (zip64 too) and central directory are well formed and every record is
// stored (method 0, not encrypted, not a directory), declares equal compressed and uncompressed sizes,
// has its local header and data before the central directory, and all records declare at most the
// file's size in all. Reads only the file's tail, the central directory and the local headers.
// Returns the file's size.
uint64_t check_zip_records(const caffe2::serialize::ReadAdapterInterface& in, const std::string& path);

}  // namespace instseg::checkpoint_detail
