#include "coco/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "instseg/errors.h"

namespace instseg::coco::detail {

MappedFile::MappedFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open for reading");
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    ::close(fd);
    throw InputError(path + ": cannot read its file status");
  }
  // A folder opens, and reads as nothing ("not valid JSON at byte 0"); a device such as /dev/zero
  // never ends. Pipes stay readable (e.g. --gt <(zcat gt.json.gz)).
  const char* not_file = S_ISDIR(info.st_mode)    ? "is a folder, not a file"
                         : S_ISCHR(info.st_mode)  ? "not a regular file (a character device)"
                         : S_ISBLK(info.st_mode)  ? "not a regular file (a block device)"
                         : S_ISSOCK(info.st_mode) ? "not a regular file (a socket)"
                                                  : nullptr;
  if (not_file) {
    ::close(fd);
    throw InputError(path + ": " + not_file);
  }
  if (S_ISREG(info.st_mode) && info.st_size > 0) {
    // MAP_POPULATE maps the (usually cached) pages at once instead of one fault per page.
    void* data = ::mmap(nullptr, size_t(info.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (data != MAP_FAILED) {
      data_ = static_cast<const char*>(data);
      size_ = size_t(info.st_size);
      mapped_ = true;
    }
  }
  if (mapped_) {
    ::close(fd);
    return;
  }
  // Read from the descriptor already open: reopening a named pipe (mkfifo) would find its writer
  // gone and its data lost.
  char chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw InputError(path + ": read failed");
    }
    copy_.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  data_ = copy_.data();
  size_ = copy_.size();
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<char*>(data_), size_);
}

}  // namespace instseg::coco::detail
