// JSON as dinv reads model configs and headers: io::parse_json (depth cap,
// then nlohmann), the typed getters, and the component config readers on top.
#include <cstdint>
#include <string>

#include "dinv/core/error.h"
#include "dinv/io/json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const dinv::io::Json j = dinv::io::parse_json(text, "fuzz.json");
    if (!j.is_object()) return 0;
    const dinv::io::JsonObject o(j, "fuzz.json");
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      try {
        o.get_int(k);
      } catch (const dinv::IoError&) {
      }
      try {
        o.get_double(k);
      } catch (const dinv::IoError&) {
      }
      try {
        o.get_int_list(k);
      } catch (const dinv::IoError&) {
      }
      try {
        o.get_string_list(k);
      } catch (const dinv::IoError&) {
      }
    }
    (void)dinv::io::canonical_json(j);
  } catch (const dinv::IoError&) {
  }
  return 0;
}
