#include "dinv/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "dinv/core/log.h"

namespace dinv {
namespace {
Progress::Style g_default_style = Progress::Style::automatic;
double g_default_interval = -1;
}  // namespace

void Progress::set_default(Style style, double line_interval_s) {
  g_default_style = style;
  g_default_interval = line_interval_s;
}

Progress::Progress(std::string label, std::int64_t total, std::string unit, Style style, double line_interval_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), style_(style), interval_(line_interval_s) {
  if (style_ == Style::automatic) {
    style_ = g_default_style;
    if (g_default_interval > 0) interval_ = g_default_interval;
  }
  if (style_ == Style::automatic) style_ = isatty(STDOUT_FILENO) ? Style::bar : Style::lines;
  if (log::rank() != 0 || log::level() > log::Level::info) style_ = Style::silent;
  start_ = last_print_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::set_already_done(std::int64_t n) {
  resumed_ = n;
  done_ = n;
}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "--:--";
  const auto t = static_cast<long long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", t / 60, t % 60);
  return buf;
}

std::string Progress::report_line() const {
  const double e = elapsed();
  const double rate = e > 0 ? static_cast<double>(done_ - resumed_) / e : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : -1.0;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s: %lld/%lld %s (%.1f%%), %.2f %s/s, elapsed %s, ETA %s", label_.c_str(),
                static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                total_ > 0 ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0, rate,
                unit_.c_str(), format_duration(e).c_str(), format_duration(eta).c_str());
  std::string line = buf;
  if (!extra_.empty()) line += ", " + extra_;
  return line;
}

void Progress::advance(std::int64_t n, const std::string& extra) {
  done_ = std::min(total_, done_ + n);
  if (!extra.empty()) extra_ = extra;
  render(false);
}

void Progress::render(bool force) {
  if (style_ == Style::silent) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (style_ == Style::bar) {
    if (!force && since < 0.2) return;
    last_print_ = now;
    const int width = 30;
    const int filled = total_ > 0 ? static_cast<int>(width * done_ / total_) : width;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::printf("\r[%s] %s\x1b[K", bar.c_str(), report_line().c_str());
    std::fflush(stdout);
    return;
  }
  if (!force && since < interval_) return;
  last_print_ = now;
  printed_done_ = done_;
  log::info(report_line());
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  // In line style the last advance may have printed the final count already.
  if (style_ != Style::bar && printed_done_ == done_) return;
  render(true);
  if (style_ == Style::bar) {
    std::printf("\n");
    std::fflush(stdout);
  }
}

}  // namespace dinv
