#include "dinv/core/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "dinv/core/error.h"

namespace dinv::log {
namespace {
int g_rank = 0;
int g_size = 1;
Level g_level = Level::info;
std::mutex g_mutex;  // one line at a time, also from worker threads
}  // namespace

void set_rank(int rank, int size) {
  g_rank = rank;
  g_size = size;
}
void set_level(Level level) { g_level = level; }
Level level() { return g_level; }
int rank() { return g_rank; }

Level level_from_string(const std::string& name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  throw ConfigError("unknown log level '" + name + "' (allowed: debug, info, warn, error, off)");
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

void write(Level level, const std::string& message) {
  if (level < g_level) return;
  // Info and debug come from rank 0 only: one job, one log. Problems come from
  // whichever rank has them.
  if (level < Level::warn && g_rank != 0) return;
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(g_mutex);
  FILE* out = level >= Level::warn ? stderr : stdout;
  if (g_size > 1)
    std::fprintf(out, "%s [%s] [rank %d] %s\n", timestamp().c_str(), names[static_cast<int>(level)], g_rank,
                 message.c_str());
  else
    std::fprintf(out, "%s [%s] %s\n", timestamp().c_str(), names[static_cast<int>(level)], message.c_str());
  std::fflush(out);
}

}  // namespace dinv::log
