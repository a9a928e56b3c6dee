#include "dinv/core/settings.h"

#include <algorithm>
#include <map>

namespace dinv::settings {

namespace {

bool starts_name_at(const std::string& text, std::size_t at, const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (text.compare(at, n.size() + 1, n + "=") == 0) return true;
  return false;
}

std::string quoted(const std::string& value) { return "'" + value + "'"; }

}  // namespace

std::string Difference::describe() const {
  const std::string was = missing_stored ? "absent there" : quoted(stored) + " there";
  const std::string is = missing_now ? "absent in this run" : quoted(now) + " in this run";
  return key + " is " + was + ", " + is;
}

std::vector<std::pair<std::string, std::string>> parse_settings_text(const std::string& text,
                                                                     const std::vector<std::string>& names) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const auto eq = text.find('=', at);
    if (eq == std::string::npos) break;
    auto end = eq + 1;
    while ((end = text.find(' ', end)) != std::string::npos && !starts_name_at(text, end + 1, names)) ++end;
    if (end == std::string::npos) end = text.size();
    out.emplace_back(text.substr(at, eq - at), text.substr(eq + 1, end - eq - 1));
    at = end + 1;
  }
  return out;
}

std::vector<Difference> compare_settings_texts(const std::string& stored, const std::string& now,
                                               const std::vector<std::string>& names,
                                               const std::vector<std::string>& keys) {
  const auto known = [&names](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  std::map<std::string, std::string> was, is;
  for (const auto& [n, v] : parse_settings_text(stored, names))
    if (known(n)) was[n] = v;
  for (const auto& [n, v] : parse_settings_text(now, names)) is[n] = v;
  std::vector<Difference> out;
  if (was.empty()) return out;  // not a settings text of this stage: compared whole
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto a = was.find(names[i]), b = is.find(names[i]);
    const bool in_stored = a != was.end(), in_now = b != is.end();
    if (!in_stored && !in_now) continue;
    if (in_stored && in_now && a->second == b->second) continue;
    out.push_back({keys[i], in_stored ? a->second : "", in_now ? b->second : "", !in_stored, !in_now});
  }
  return out;
}

void refuse_other_settings(const std::string& where, const std::string& stored, const std::string& now,
                           const std::vector<Difference>& differences, const std::string& hint) {
  // A text this build cannot take apart (written by another program) is
  // still refused, quoting both texts whole.
  if (differences.empty())
    throw StoreError(where + ": settings is " + quoted(stored) + " but this run has " + quoted(now) + ". " + hint);
  std::string named;
  for (const auto& d : differences) named += (named.empty() ? "" : "; ") + d.describe();
  throw StoreError(where + " was written with other settings: " + named + ". " + hint);
}

}  // namespace dinv::settings
