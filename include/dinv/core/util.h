// Small helpers that several modules need: list and shape text, suffix tests,
// the parameter count of a module. One home, so that each is written once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace dinv {

// "a, b, c" (items joined by `separator`).
std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");
bool ends_with(const std::string& text, const std::string& suffix);
// `text` without the blanks (spaces, tabs, line ends) around it.
std::string trim(const std::string& text);
// The items between separators, as std::getline yields them: "a,,b," gives
// "a", "", "b" (no item after a final separator; none for "").
std::vector<std::string> split(const std::string& text, char separator = ',');
// A comma-separated list as configuration keys hold it ("a, b,c"): items
// trimmed, empty ones dropped.
std::vector<std::string> split_list(const std::string& text);
// "[2, 3, 32, 32]".
std::string shape_str(const std::vector<std::int64_t>& shape);
// Number of parameter values (trainable or frozen) of a module and its children.
std::int64_t parameter_count(const torch::nn::Module& module);

}  // namespace dinv
