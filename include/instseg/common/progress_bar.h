#pragma once
// A one-line terminal progress bar: "label [#####.....] 12/50  3.1 it/s  ETA 0:12  <extra>".
// Redraws in place on a terminal; elsewhere (CI, pipes) prints a line at most every few seconds.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace instseg {

class ProgressBar {
 public:
  ProgressBar(int64_t total, std::string label, std::string unit = "it", std::FILE* out = stderr);
  // Marks `done` items complete (absolute count) and shows `extra` after the rate.
  void update(int64_t done, const std::string& extra = "");
  // Draws the final state and ends the line.
  void finish(const std::string& extra = "");
  double rate() const;  // items per second so far
  void set_total(int64_t total) { total_ = total; }  // when the amount of work is revised

 private:
  void draw(const std::string& extra, bool final);
  int64_t total_;
  int64_t done_ = 0;
  std::string label_, unit_;
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace instseg
