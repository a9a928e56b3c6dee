// Progress of a long stage, reported by rank 0: a live bar when stdout is a
// terminal, and one line every `interval` seconds (done/total, rate, ETA and
// any extra fields such as the loss) when it is a file, as in a Slurm job.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dinv {

class Progress {
 public:
  enum class Style { automatic, bar, lines, silent };

  // `unit` names what is counted ("images", "units", "steps").
  Progress(std::string label, std::int64_t total, std::string unit, Style style = Style::automatic,
           double line_interval_s = 30.0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Work already done before this run (resumed units): counted in done/total but
  // not in the rate.
  void set_already_done(std::int64_t n);
  // Add `n` finished items; `extra` (e.g. "loss 0.123") is shown beside the rate.
  void advance(std::int64_t n, const std::string& extra = "");
  void finish();

  // The process-wide choice of run.progress / run.progress_interval, used by
  // every Progress made with Style::automatic.
  static void set_default(Style style, double line_interval_s);

  // The one-line report, as printed in line mode (exposed for tests).
  std::string report_line() const;
  static std::string format_duration(double seconds);

 private:
  void render(bool force);
  double elapsed() const;

  std::string label_, unit_, extra_;
  std::int64_t total_, done_ = 0, resumed_ = 0;
  Style style_;
  double interval_;
  std::chrono::steady_clock::time_point start_, last_print_;
  std::int64_t printed_done_ = -1;  // `done_` of the last line printed (line style)
  bool finished_ = false;
};

}  // namespace dinv
