#pragma once
// A one-line terminal progress bar: "label [#####.....] 12/50  3.1 it/s  ETA 0:12  <extra>";
// with a time budget "label [#####.....] 12/50  3.1 it/s  ETA 3:12 (1:48 of 5:00)  <extra>".
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
  // Work that ends at a time limit (training with run.time_limit_minutes): the ETA is the time
  // left of `seconds` counted from `since`, and the bar fills with the time used, since the item
  // count may be an upper bound far beyond what the time allows.
  void set_time_budget(double seconds, std::chrono::steady_clock::time_point since);
  // The line draw() prints at `now`, without the terminal's control characters.
  std::string line(std::chrono::steady_clock::time_point now, const std::string& extra, bool final) const;

 private:
  void draw(const std::string& extra, bool final);
  int64_t total_;
  int64_t done_ = 0;
  std::string label_, unit_;
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  double budget_seconds_ = 0.0;  // 0: no time budget
  std::chrono::steady_clock::time_point budget_since_;
};

}  // namespace instseg
