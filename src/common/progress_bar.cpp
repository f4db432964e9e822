#include "instseg/common/progress_bar.h"

#include <unistd.h>

#include <algorithm>

namespace instseg {

namespace {
std::string format_duration(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}
}  // namespace

ProgressBar::ProgressBar(int64_t total, std::string label, std::string unit, std::FILE* out)
    : total_(std::max<int64_t>(total, 0)),
      label_(std::move(label)),
      unit_(std::move(unit)),
      out_(out),
      tty_(::isatty(::fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

double ProgressBar::rate() const {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
}

void ProgressBar::update(int64_t done, const std::string& extra) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  // Off a terminal every redraw is a new line, so keep them sparse.
  const double min_interval = tty_ ? 0.1 : 5.0;
  if (std::chrono::duration<double>(now - last_draw_).count() < min_interval) return;
  last_draw_ = now;
  draw(extra, false);
}

void ProgressBar::finish(const std::string& extra) {
  draw(extra, true);
}

void ProgressBar::set_time_budget(double seconds, std::chrono::steady_clock::time_point since) {
  budget_seconds_ = std::max(0.0, seconds);
  budget_since_ = since;
}

std::string ProgressBar::line(std::chrono::steady_clock::time_point now, const std::string& extra, bool final) const {
  constexpr int kWidth = 24;
  double fraction = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / total_) : 1.0;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double r = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  double eta = r > 0 ? static_cast<double>(total_ - done_) / r : 0.0;
  std::string budget;
  if (budget_seconds_ > 0) {
    const double used = std::chrono::duration<double>(now - budget_since_).count();
    fraction = std::max(fraction, std::min(1.0, used / budget_seconds_));
    eta = std::max(0.0, budget_seconds_ - used);  // not the item count's: that may be an upper bound
    budget = " (" + format_duration(used) + " of " + format_duration(budget_seconds_) + ")";
  }
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(filled, '#');
  bar.append(kWidth - filled, '.');
  char head[256];
  std::snprintf(head, sizeof head, "%s [%s] %lld/%lld  %.2f %s/s  %s %s", label_.c_str(), bar.c_str(),
                static_cast<long long>(done_), static_cast<long long>(total_), r, unit_.c_str(),
                final ? "took" : "ETA", format_duration(final ? elapsed : eta).c_str());
  return head + (final ? std::string() : budget) + "  " + extra;
}

void ProgressBar::draw(const std::string& extra, bool final) {
  std::fprintf(out_, "%s%s%s", tty_ ? "\r\033[K" : "", line(std::chrono::steady_clock::now(), extra, final).c_str(),
               (final || !tty_) ? "\n" : "");
  std::fflush(out_);
}

}  // namespace instseg
