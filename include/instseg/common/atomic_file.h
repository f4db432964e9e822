#pragma once
// Outputs and checkpoints are written to "<path>.tmp" in the same folder and renamed over <path>,
// so a reader never sees half a file, even if the process is killed mid-write.
#include <functional>
#include <ostream>
#include <string>

namespace instseg {

// Calls write(stream) on a temporary file, flushes it to disk and renames it to path.
// Throws InputError naming the path if any step fails; the temporary file is removed then.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

void write_bytes_atomically(const std::string& path, const std::string& bytes);

}  // namespace instseg
