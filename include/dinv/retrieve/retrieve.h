// `dinv retrieve`, the retrieval baseline: for each real image (the store's
// /source, or the whole [data] set), its k nearest pool images by cosine
// similarity of CLIP image features, labelled with the query's label and
// written as /samples/<tag> like generated samples.
//
// Work is cut in fixed units independent of the rank count: pool and query
// features in shards of retrieve.shard_size images (batches of
// retrieve.batch_size within a shard), cached with a ledger in an HDF5 file
// (resumable per shard; a rerun or another k reuses them); similarities per
// pool shard against all queries; top-k candidates merged across ranks with
// ties broken by pool index. So 1, 2 or 4 ranks give the same bytes.
#pragma once

#include <cstdint>
#include <string>

#include "dinv/core/settings.h"
#include "dinv/data/dataset.h"

namespace dinv {
class Config;
class ConfigSchema;
}  // namespace dinv
namespace dinv::dist {
class World;
}

namespace dinv::retrieve {

struct RetrieveSettings {
  std::string model;  // folder: config.json, model.safetensors, preprocessor_config.json
  std::int64_t k = 5;
  std::string tag;     // empty: "retrieval_k<k>" (+ "_dedup")
  bool dedup = false;  // a pool image retrieved by several queries is written once
  double max_bad_share = 0.01;
  std::int64_t batch_size = 32;
  std::int64_t shard_size = 256;
  std::string cache;            // empty: <store>.retrieve_features.h5
  std::int64_t resolution = 0;  // stored image size; 0: the first query image's height
  std::string features;         // derived: the cache keys of the pool's and the queries' features
};

// The retrieve settings, declared once (core/settings.h): registration,
// reading, a tag's settings text, its resume check, its typed attributes and
// the default tag come from it.
const settings::Declaration<RetrieveSettings>& retrieve_declaration();

void register_retrieve_options(ConfigSchema& schema);
RetrieveSettings retrieve_settings(const Config& config);

struct RetrieveOutcome {
  std::string tag;
  std::int64_t rows = 0;      // samples in the tag
  std::int64_t bad_pool = 0;  // pool images that did not decode (skipped)
  bool stopped = false;       // by a signal; rerun to resume
};

// Collective over the world. `real`: the [data] set; `pool`: the retrieve.pool set.
RetrieveOutcome run_retrieve(dist::World& world, const RetrieveSettings& settings, const data::Dataset& real,
                             const data::Dataset& pool, const std::string& store_path, const std::string& config_text);

}  // namespace dinv::retrieve
