// INI configuration files as `--config` reads them: read_ini (file checks,
// line and size caps, duplicate keys) and Config::resolve (typed values,
// bounds, choices, the value-length cap before Boost's conversion).
#include <cstdint>
#include <string>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "fuzz_util.h"

namespace {
const dinv::ConfigSchema& schema() {
  static const dinv::ConfigSchema s = [] {
    dinv::ConfigSchema s;
    s.add("run.seed", 0, "seed").min(0);
    s.add("run.threads", 1, "threads").min(0).max(1024);
    s.add("embed.lr", 0.03, "lr").greater_than(0);
    s.add("embed.dtype", "fp32", "dtype").choices({"fp32", "fp16", "bf16"});
    s.add("embed.amp", false, "amp");
    s.add("store.path", "", "path");
    s.add_without_default("data.root", dinv::ValueKind::string, "root");
    return s;
  }();
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = dinv::fuzz::write_temp("fuzz.ini", data, size);
  try {
    const auto cfg = dinv::Config::resolve(schema(), {path}, {});
    (void)cfg.to_ini();
  } catch (const dinv::ConfigError&) {
  }
  return 0;
}
