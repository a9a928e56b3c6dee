// `dinv generate`: stage 2. The (source image, sample index) pairs are cut
// into fixed chunks (global units), spread over ranks by blocks, and sampled
// in batches; each sample's randomness comes from generators seeded from
// (run seed, source, sample index): any rank count writes the same bytes for
// the same batch settings, and another batch size the same samples within 1
// of 255 per pixel value (docs/architecture.md, "Same bytes on any rank
// count"). Output: /samples/<tag> in the experiment store,
// created up front at its final size, resumable per chunk.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dinv/core/config.h"
#include "dinv/core/settings.h"

namespace dinv::dist {
class World;
}

namespace dinv::store {
class Store;
}

namespace dinv::generation {

// The closed sets of the settings, parsed once when the config is read.
enum class Mode { embedding, prompt };           // perturbed learned embeddings (the method) | class prompts
enum class Uncond { group_mean, empty_prompt };  // the unconditional branch of embedding mode
enum class PromptPer { source, class_ };         // prompt mode: num_samples per source image | per class
inline const settings::Names<Mode> kModeNames{{{Mode::embedding, "embedding"}, {Mode::prompt, "prompt"}}};
// Partners are drawn only where an embedding is interpolated towards one: with
// generate.interpolation = 0 every sample stays at its own embedding (plus
// noise), so a group needs no images to spare and /partner holds -1.
inline bool needs_partners(Mode mode, double interpolation) { return mode == Mode::embedding && interpolation != 0; }
inline const settings::Names<Uncond> kUncondNames{
    {{Uncond::group_mean, "group_mean"}, {Uncond::empty_prompt, "empty_prompt"}}};
inline const settings::Names<PromptPer> kPromptPerNames{{{PromptPer::source, "source"}, {PromptPer::class_, "class"}}};

struct GenerateSettings {
  Mode mode = Mode::embedding;
  std::int64_t num_samples = 5;
  double interpolation = 0.1;
  double emb_noise = 0.1;
  double guidance = 2.0;           // sampler.guidance
  std::string sampler = "folder";  // sampler.name; the model's resolved name once it is built
  std::int64_t steps = 100;        // sampler.steps
  std::int64_t sampling_resolution = 128;
  std::int64_t save_resolution = 32;
  std::string resize_filter = "bicubic";
  std::int64_t batch_size = 8;
  std::int64_t chunk_size = 40;
  Uncond uncond = Uncond::group_mean;
  std::string prompt = "a photo of a {}";
  PromptPer prompt_per = PromptPer::source;
  std::string tag;  // "" : derived from the settings
  std::uint64_t seed = 0;
  std::int64_t preview = 0;    // samples in the preview PNG (0: none)
  std::string preview_path;    // "" : <store>.preview/<tag>.png
  std::string dtype = "fp32";  // the UNet/VAE dtype the model is loaded with
};

// The frozen generator as stage 2 sees it (built from a diffusers folder by
// the sd / diffusion modules with the sampler, steps, guidance and sampling
// resolution of the settings).
struct GenerationModel {
  // Guided sampling of cond and uncond [B, T, D] whose rows are the samples
  // first_index, first_index + 1, ... of the run: each row's initial latents
  // and sampler noise come from its own generator, seeded from (run seed,
  // sample index) -> uint8 [B, R, R, 3] at the sampling resolution.
  std::function<at::Tensor(const at::Tensor& cond, const at::Tensor& uncond, std::int64_t first_index)> sample;
  // The seed of sample `index`'s generator (stored with every sample).
  std::function<std::uint64_t(std::int64_t index)> sample_seed;
  // Text conditioning [B, 77, D] of prompts (prompt mode, empty-prompt uncond).
  std::function<at::Tensor(const std::vector<std::string>& prompts)> encode_prompts;
  std::string fingerprint;  // must equal the embeddings' model fingerprint
  std::string sampler_name;
};

// The generate settings, declared once (core/settings.h): registration,
// reading, the stored settings text, its resume check, the typed attributes
// of a tag and the derived tag come from it.
const settings::Declaration<GenerateSettings>& generate_declaration();
void register_generate_options(ConfigSchema& schema);
GenerateSettings generate_settings(const Config& config);
// The tag a run with these settings writes to when none is given.
std::string derived_tag(const GenerateSettings& settings, const std::string& sampler_name);
// The chunk size of an existing tag's ledger: the one it was created with
// (attribute "chunk_size"), whatever generate.chunk_size says now; `configured`
// for tags written before the attribute existed.
std::int64_t tag_chunk_size(const store::Store& store, const std::string& group, std::int64_t configured);

// One planned sample.
struct SampleSpec {
  std::int64_t source = -1;   // dataset index of the source image (-1: per-class prompt)
  std::int64_t partner = -1;  // dataset index of the partner (-1: none)
  std::int64_t label = 0;
  std::int64_t index = 0;  // k, the sample index of its source (or class)
  std::uint64_t seed = 0;  // the seed of the sample's generator
};

struct GenerateOutcome {
  std::string tag;
  std::int64_t images = 0, chunks_total = 0, chunks_done = 0;
  std::int64_t chunks_done_before = 0;  // finished when this run started (its timing record)
  bool stopped = false;
};

GenerateOutcome run_generate(dist::World& world, const GenerateSettings& settings, const GenerationModel& model,
                             const std::string& store_path, const std::string& config_text);

}  // namespace dinv::generation
