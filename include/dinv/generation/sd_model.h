// The generator of stage 2 from a loaded Stable Diffusion folder: the guided
// sampling loop of the diffusion module over its UNet and VAE, and its text
// encoder for prompts.
#pragma once

#include <memory>

#include "dinv/diffusion/scheduler.h"
#include "dinv/generation/generate.h"
#include "dinv/sd/pipeline.h"

namespace dinv::generation {

// `sampler`: the user's choice over the folder's scheduler_config.json.
GenerationModel make_generation_model(std::shared_ptr<sd::Pipeline> pipeline, const GenerateSettings& settings,
                                      const diffusion::SamplerOptions& sampler);

}  // namespace dinv::generation
