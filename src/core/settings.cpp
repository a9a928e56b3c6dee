#include "dinv/core/settings.h"

#include <algorithm>
#include <map>
#include <sstream>

namespace dinv::settings {

namespace {

// Whether a name of `names` from `first` on starts at `text[at]` ("name=").
bool starts_name_at(const std::string& text, std::size_t at, const std::vector<std::string>& names, std::size_t first) {
  for (auto i = first; i < names.size(); ++i)
    if (text.compare(at, names[i].size() + 1, names[i] + "=") == 0) return true;
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
    // Names come in text order: a value (a cache key holding "shard_size=7")
    // ends only at a name that follows its own.
    const auto own = std::find(names.begin(), names.end(), text.substr(at, eq - at));
    const std::size_t later = own == names.end() ? 0 : static_cast<std::size_t>(own - names.begin()) + 1;
    auto end = eq + 1;
    while ((end = text.find(' ', end)) != std::string::npos && !starts_name_at(text, end + 1, names, later)) ++end;
    if (end == std::string::npos) end = text.size();
    out.emplace_back(text.substr(at, eq - at), text.substr(eq + 1, end - eq - 1));
    at = end + 1;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_settings_lines(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find(" = ");
    if (eq != std::string::npos) out.emplace_back(line.substr(0, eq), line.substr(eq + 3));
  }
  return out;
}

namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

// The differences between parsed texts, in the order of `names` (`keys[i]`
// is the configuration key of `names[i]`).
std::vector<Difference> compare_settings(const Pairs& stored, const Pairs& now, const std::vector<std::string>& names,
                                         const std::vector<std::string>& keys) {
  const auto known = [&names](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  std::map<std::string, std::string> was, is;
  for (const auto& [n, v] : stored)
    if (known(n)) was[n] = v;
  for (const auto& [n, v] : now) is[n] = v;
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

}  // namespace

std::vector<Difference> compare_settings_texts(const std::string& stored, const std::string& now,
                                               const std::vector<std::string>& names,
                                               const std::vector<std::string>& keys) {
  return compare_settings(parse_settings_text(stored, names), parse_settings_text(now, names), names, keys);
}

std::vector<Difference> compare_settings_lines(const std::string& stored, const std::string& now,
                                               const std::vector<std::string>& keys) {
  return compare_settings(parse_settings_lines(stored), parse_settings_lines(now), keys, keys);
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
