#include "instseg/common/stage_profile.h"

namespace instseg {

void StageProfile::add(const std::string& stage, double s) {
  for (auto& entry : seconds) {
    if (entry.first == stage) {
      entry.second += s;
      return;
    }
  }
  seconds.emplace_back(stage, s);
}

void StageProfile::count(const std::string& what, int64_t n) {
  for (auto& entry : counts) {
    if (entry.first == what) {
      entry.second += n;
      return;
    }
  }
  counts.emplace_back(what, n);
}

int64_t StageProfile::count_of(const std::string& what) const {
  for (const auto& entry : counts) {
    if (entry.first == what) return entry.second;
  }
  return 0;
}

StageTimer::StageTimer(StageProfile* profile, const char* stage) : profile_(profile), stage_(stage) {
  if (profile_ != nullptr) start_ = std::chrono::steady_clock::now();
}

void StageTimer::stop() {
  if (profile_ == nullptr) return;
  profile_->add(stage_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  profile_ = nullptr;
}

}  // namespace instseg
