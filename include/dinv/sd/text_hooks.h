// Extension points for the text side of Stable Diffusion (CLIP tokenizer and
// text encoder, built on branch sd-text). The defaults in
// src/sd/text_hooks.cpp do nothing; the text side replaces that file.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/sd/loader.h"

namespace dinv::sd {

// model_index.json entries, e.g. "text_encoder" -> ("transformers", "CLIPTextModel").
using ComponentEntries = std::map<std::string, std::pair<std::string, std::string>>;

// Write OUT/text_encoder/ and OUT/tokenizer/ for a preset (random weights from
// `seed`), returning the model_index.json entries written; empty when this
// build has no text components (then `dinv model init` says so).
ComponentEntries write_text_components(const std::string& out, const std::string& preset, std::uint64_t seed);

// `dinv model run DIR --component NAME`: components handled by the text side
// (e.g. "text-encoder"), listed in --help.
std::vector<std::string> text_run_components();
// Run one of them on named inputs; nullopt when NAME is not a text component.
std::optional<std::map<std::string, at::Tensor>> run_text_component(const std::string& component,
                                                                    const std::string& dir,
                                                                    const std::map<std::string, at::Tensor>& inputs,
                                                                    const LoadOptions& options);

// `dinv model info`: a description of a text component folder (class,
// architecture, parameters); nullopt when not handled here.
std::optional<std::string> describe_text_component(const std::string& dir, const std::string& component,
                                                   const LoadOptions& options);

// Extra `dinv model` subcommands (e.g. "tokenize"): the exit code, or nullopt
// when `sub` is not one of them. `args` follow the subcommand.
std::optional<int> run_text_subcommand(const std::string& sub, const std::vector<std::string>& args);
// Usage lines of those subcommands for `dinv model --help`.
std::vector<std::string> text_subcommand_usage();

}  // namespace dinv::sd
