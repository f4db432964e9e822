#include "instseg/common/atomic_file.h"

#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "instseg/errors.h"

namespace instseg {

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp";
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw InputError(path + ": cannot open for writing");
      write(out);
      out.flush();
      if (!out) throw InputError(path + ": write failed (disk full?)");
    }
    // fsync before rename: otherwise a crash can leave the new name pointing at empty data.
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw InputError(path + ": cannot rename temporary file: " + ec.message());
    // The rename itself lives in the folder's entry list: sync it too, or after a power loss the
    // folder may still show the old file (a killed process needs neither sync).
    const auto parent = std::filesystem::path(path).parent_path();
    const int dir_fd = ::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);
      ::close(dir_fd);
    }
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

void write_bytes_atomically(const std::string& path, const std::string& bytes) {
  write_file_atomically(path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

}  // namespace instseg
