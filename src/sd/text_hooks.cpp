// Default (empty) text-side hooks; the sd-text branch replaces this file.
#include "dinv/sd/text_hooks.h"

namespace dinv::sd {

ComponentEntries write_text_components(const std::string&, const std::string&, std::uint64_t) { return {}; }

std::vector<std::string> text_run_components() { return {}; }

std::optional<std::map<std::string, at::Tensor>> run_text_component(const std::string&, const std::string&,
                                                                    const std::map<std::string, at::Tensor>&,
                                                                    const LoadOptions&) {
  return std::nullopt;
}

std::optional<std::string> describe_text_component(const std::string&, const std::string&, const LoadOptions&) {
  return std::nullopt;
}

std::optional<int> run_text_subcommand(const std::string&, const std::vector<std::string>&) { return std::nullopt; }

std::vector<std::string> text_subcommand_usage() { return {}; }

}  // namespace dinv::sd
