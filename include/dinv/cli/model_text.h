// The text side of `dinv model` (src/cli/model_text.cpp): the tokenize
// subcommand, the text encoder as a `run` component, `info` lines.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "dinv/sd/loader.h"

namespace dinv::cli {

// `dinv model tokenize DIR TEXT...`: prints each text's ids, tokens and length; the exit code.
int model_tokenize(const std::vector<std::string>& args);
// `dinv model run DIR --component text-encoder`: inputs {input_ids [B, T]} ->
// {last_hidden_state, penultimate_hidden_state} [B, T, D].
std::map<std::string, at::Tensor> run_text_encoder(const std::string& dir,
                                                   const std::map<std::string, at::Tensor>& inputs,
                                                   const sd::LoadOptions& options);
// `dinv model info`: the architecture of DIR's text_encoder/ or tokenizer/; nullopt for other components.
std::optional<std::string> describe_text_component(const std::string& dir, const std::string& component);

}  // namespace dinv::cli
