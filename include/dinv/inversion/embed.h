// `dinv embed`: stage 1 over the whole dataset. Work units (packs of groups of
// images) are spread over ranks by contiguous blocks; each rank trains its
// units one after another, writing each finished unit's rows of /source and
// /embeddings independently and recording it in the ledger. Unit state is
// checkpointed to <store>.ckpt/ every `checkpoint_every` steps and on
// SIGTERM/SIGUSR2, so a rerun of the same command resumes where it stopped.
#pragma once

#include <string>

#include "dinv/core/config.h"
#include "dinv/core/settings.h"
#include "dinv/data/dataset.h"
#include "dinv/inversion/frozen_model.h"
#include "dinv/inversion/unit_trainer.h"

namespace dinv::dist {
class World;
}

namespace dinv::inversion {

// The embed settings, declared once (core/settings.h): registration,
// reading, the stored settings text and its resume check come from it.
const settings::Declaration<EmbedSettings>& embed_declaration();
void register_embed_options(ConfigSchema& schema);
EmbedSettings embed_settings(const Config& config);

struct EmbedOutcome {
  std::int64_t units_total = 0, units_done = 0, units_failed = 0;
  std::int64_t units_done_before = 0;  // finished when this run started (its timing record)
  std::int64_t images = 0;             // images in all units
  bool stopped = false;                // a stop signal arrived: state is checkpointed
};

// Runs stage 1 into `store_path` (collective). `config_text` is stored with
// the output; `num_images` limits the dataset (0: all of it).
EmbedOutcome run_embed(dist::World& world, const EmbedSettings& settings, const data::Dataset& dataset,
                       std::int64_t num_images, const FrozenModel& model, const std::string& store_path,
                       const std::string& config_text);

// Images [begin, end) of `dataset` resized to `resolution` with `filter`, as
// float [n, 3, R, R] in [-1, 1] (the method's preprocessing).
at::Tensor load_images(const data::Dataset& dataset, dist::Range images, std::int64_t resolution,
                       const std::string& filter);

}  // namespace dinv::inversion
