#include "dinv/retrieve/retrieve.h"

#include <algorithm>
#include <limits>
#include <map>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "dinv/core/config.h"
#include "dinv/core/error.h"
#include "dinv/core/log.h"
#include "dinv/core/progress.h"
#include "dinv/data/readers.h"
#include "dinv/data/transforms.h"
#include "dinv/dist/control.h"
#include "dinv/dist/partition.h"
#include "dinv/dist/world.h"
#include "dinv/io/json.h"
#include "dinv/sd/clip_vision.h"
#include "dinv/stage/driver.h"
#include "dinv/store/h5.h"
#include "dinv/store/stored_settings.h"
#include "dinv/store/store.h"

namespace dinv::retrieve {

namespace {

// Every retrieve setting, once, in the order of the help and the stored
// configuration. Text positions order a tag's settings text ("k=5 dedup=0
// resolution=32 shard_size=256 features=...", byte for byte as before the
// declaration); attribute positions order the tag's typed attributes after
// "settings" and "mode".
settings::Declaration<RetrieveSettings> declare_retrieve_settings() {
  using S = RetrieveSettings;
  settings::Declaration<S> d("retrieve");
  d.add("retrieve.model", &S::model,
        "CLIP vision folder as transformers saves CLIPVisionModelWithProjection: config.json, "
        "model.safetensors and the image processor's preprocessor_config.json");
  d.add("retrieve.k", &S::k, "neighbours retrieved per real image")
      .min(1)
      .max(100000)
      .changes(0)
      .stored(0)
      .tagged(0, "retrieval_k");
  d.add("retrieve.tag", &S::tag, "name of /samples/<tag> (empty: retrieval_k<k>, with _dedup when retrieve.dedup)");
  d.add("retrieve.dedup", &S::dedup,
        "write a pool image retrieved by several real images once, labelled by the most "
        "similar of them (ties: the first); otherwise once per query")
      .changes(1)
      .stored(1)
      .tagged(1, [](const S& s) { return s.dedup ? "dedup" : ""; });
  d.add("retrieve.max_bad_share", &S::max_bad_share,
        "share of pool images that may fail to decode (skipped and counted) before "
        "the run fails naming them")
      .min(0)
      .max(1);
  // Part of the features' cache key (the features entry), not of the text.
  d.add("retrieve.batch_size", &S::batch_size,
        "images per feature batch (cut within shards: any rank count gives the same "
        "bytes for the same batch_size and shard_size)")
      .min(1)
      .max(65536);
  d.add("retrieve.shard_size", &S::shard_size, "pool and query images per work unit (resume granularity)")
      .min(1)
      .changes(3)
      .stored(3, "chunk_size");
  d.add("retrieve.cache", &S::cache,
        "HDF5 file caching the CLIP features, reused by reruns and other k "
        "(empty: <store.path>.retrieve_features.h5)");
  d.add("retrieve.resolution", &S::resolution,
        "size of the stored images: shorter side resized (antialiased bicubic), centre "
        "crop (0: the first real image's height)")
      .min(0)
      .max(kMaxResolution)
      .changes(2)
      .stored(2, "save_resolution");
  d.derived("features", &S::features, "the CLIP features (model, pool, queries, shard_size, batch_size)").changes(4);
  return d;
}

}  // namespace

const settings::Declaration<RetrieveSettings>& retrieve_declaration() {
  static const auto declaration = declare_retrieve_settings();
  return declaration;
}

void register_retrieve_options(ConfigSchema& s) {
  retrieve_declaration().register_options(s);
  data::register_dataset_options(s, "retrieve.pool", "folder", "retrieval pool");
}

RetrieveSettings retrieve_settings(const Config& c) {
  RetrieveSettings s = retrieve_declaration().read(c);
  if (s.model.empty()) c.reject("retrieve.model", "name the CLIP vision folder (CLIPVisionModelWithProjection)");
  if (s.tag.empty()) s.tag = retrieve_declaration().tag(s);
  return s;
}

namespace {

struct Encoder {
  sd::ClipVisionModel model{nullptr};
  sd::ClipImageProcessor processor;
  std::string fingerprint;  // weights + config + preprocessing
};

Encoder load_encoder(const std::string& dir, const at::Device& device) {
  Encoder e;
  sd::LoadOptions options;
  options.device = device;
  e.model = sd::load_clip_vision_model(dir, options);
  const std::string pre = dir + "/preprocessor_config.json";
  e.processor = sd::ClipImageProcessor::from_file(pre);
  e.fingerprint = sd::fingerprint_folder(dir).fingerprint;
  return e;
}

// Which dataset indices are the queries, and their labels.
struct Queries {
  std::vector<std::int64_t> index, label;
};

// Features of `indices` of `dataset` into `group` of the cache: /features
// [N, P], /bad [N] (1: did not decode; only allowed when `skip_bad`), and a
// ledger of shards. Returns whether a stop signal stopped it (on any rank).
bool compute_features(dist::World& world, store::Store& cache, const std::string& group, const data::Dataset& dataset,
                      const std::vector<std::int64_t>& indices, Encoder& enc, const RetrieveSettings& s, bool skip_bad,
                      const std::string& key) {
  const auto n = static_cast<std::int64_t>(indices.size());
  const auto units = dist::chunk_count(n, s.shard_size);
  const auto dim = enc.model->config().projection_dim;
  const auto shard = [&](std::int64_t u) { return dist::chunk(n, s.shard_size, u); };
  at::Tensor feats, flags;  // the shard under way
  torch::NoGradGuard no_grad;
  const at::Device device = enc.model->parameters().front().device();
  stage::UnitStage stage;
  stage.prepare = [&](store::Store& st) {
    if (!st.has(group)) {
      store::NewGroups created(st);
      auto& g = created.add(group);
      g.set_attribute("key", key);
      g.set_attribute("shard_size", s.shard_size);
      g.set_attribute("batch_size", s.batch_size);
      g.create_dataset("features", at::kFloat, {n, dim});
      g.create_dataset("bad", at::kByte, {n});
      store::UnitLedger::create(g, units);
      created.commit();
    }
    const std::string hint =
        "the cache was made for other images, model, shard_size or batch_size: name another "
        "retrieve.cache or remove " +
        st.path();
    st.require_attribute(group, "key", key, hint);
    st.require_dataset(group + "/features", at::kFloat, {n, dim});
    return stage::Plan{"retrieve", group, units, "shard", "images", "retrieve " + group + " features (rank 0)"};
  };
  stage.progress_of = [&](std::int64_t u) { return shard(u).size(); };
  stage.work = [&](std::int64_t u, Progress& progress) {
    const auto r = shard(u);
    feats = at::zeros({r.size(), dim}, at::kFloat);
    flags = at::zeros({r.size()}, at::kByte);
    for (auto b = r.begin; b < r.end; b += s.batch_size) {
      const auto e = std::min(r.end, b + s.batch_size);
      std::vector<at::Tensor> pixels;
      std::vector<std::int64_t> rows;
      for (auto i = b; i < e; ++i) {
        try {
          pixels.push_back(enc.processor(dataset.get(indices[static_cast<std::size_t>(i)]).image));
          rows.push_back(i - r.begin);
        } catch (const IoError& err) {
          if (!skip_bad) throw;
          log::warn("retrieve: pool image " + std::to_string(indices[static_cast<std::size_t>(i)]) +
                    " skipped: " + err.what());
          flags[i - r.begin] = 1;
        }
      }
      if (!pixels.empty()) {
        // A batch of the usable images: its shape depends only on the data, not on the rank count.
        const at::Tensor out = enc.model->forward(at::stack(pixels).to(device)).image_embeds.to(at::kCPU, at::kFloat);
        feats.index_copy_(0, at::tensor(rows, at::kLong), out);
      }
      progress.advance(e - b);
    }
    return stage::UnitEnd::finished;
  };
  stage.write = [&](store::Store& st, std::int64_t u) {
    st.dataset(group + "/features").write_rows(shard(u).begin, feats, h5::Transfer::independent);
    st.dataset(group + "/bad").write_rows(shard(u).begin, flags, h5::Transfer::independent);
  };
  stage.items_of = [&](std::int64_t u) { return "images " + dist::range_text(shard(u)); };
  return stage::run_units(world, cache, stage).stopped;
}

// Rows scaled to unit length: cosine similarity is then a dot product.
at::Tensor unit_rows(const at::Tensor& x) { return x / x.norm(2, {1}, true).clamp_min(1e-12); }

struct Candidate {
  float sim = -std::numeric_limits<float>::infinity();
  std::int64_t pool = -1;
};

bool better(const Candidate& a, const Candidate& b) {
  if (a.pool < 0 || b.pool < 0) return a.pool >= 0 && b.pool < 0;
  return a.sim > b.sim || (a.sim == b.sim && a.pool < b.pool);
}

// Keep the k best of `list` (sorted best first, padded with empty candidates).
void keep_best(std::vector<Candidate>& list, std::int64_t k) {
  std::sort(list.begin(), list.end(), better);
  list.resize(static_cast<std::size_t>(k));
}

// Per query, the k best pool images among this rank's pool shards, then
// merged over all ranks: [Q][k].
std::vector<std::vector<Candidate>> top_k(dist::World& world, store::Store& cache, std::int64_t q_count,
                                          std::int64_t p_count, const RetrieveSettings& s) {
  const at::Tensor queries = unit_rows(cache.dataset("/query/features").read_all());
  std::vector<std::vector<Candidate>> best(static_cast<std::size_t>(q_count),
                                           std::vector<Candidate>(static_cast<std::size_t>(s.k)));
  const auto units = dist::chunk_count(p_count, s.shard_size);
  for (auto u : dist::units_of_rank(units, world.size(), world.rank())) {
    const auto r = dist::chunk(p_count, s.shard_size, u);
    const at::Tensor pool = unit_rows(cache.dataset("/pool/features").read_rows(r.begin, r.end));
    const at::Tensor bad = cache.dataset("/pool/bad").read_rows(r.begin, r.end);
    // [Q, shard]: one fixed-shape product per shard, the same on any rank count.
    const at::Tensor sims = at::matmul(queries, pool.t()).contiguous();
    const float* sp = sims.data_ptr<float>();
    const std::uint8_t* bp = bad.data_ptr<std::uint8_t>();
    for (std::int64_t q = 0; q < q_count; ++q) {
      auto& list = best[static_cast<std::size_t>(q)];
      for (std::int64_t j = 0; j < r.size(); ++j)
        if (!bp[j]) list.push_back({sp[q * r.size() + j], r.begin + j});
      keep_best(list, s.k);
    }
  }
  // Every rank contributes Q*k candidates; all ranks merge them alike.
  const auto per_rank = q_count * s.k;
  std::vector<float> sims(static_cast<std::size_t>(per_rank));
  std::vector<std::int64_t> idx(static_cast<std::size_t>(per_rank));
  for (std::int64_t q = 0; q < q_count; ++q)
    for (std::int64_t j = 0; j < s.k; ++j) {
      sims[static_cast<std::size_t>(q * s.k + j)] = best[q][j].sim;
      idx[static_cast<std::size_t>(q * s.k + j)] = best[q][j].pool;
    }
  const std::vector<float> all_sims = dist::all_gather(world, sims);
  const std::vector<std::int64_t> all_idx = dist::all_gather(world, idx);
  for (std::int64_t q = 0; q < q_count; ++q) {
    auto& list = best[static_cast<std::size_t>(q)];
    list.clear();
    for (int rank = 0; rank < world.size(); ++rank)
      for (std::int64_t j = 0; j < s.k; ++j) {
        const auto at_ = static_cast<std::size_t>(rank * per_rank + q * s.k + j);
        list.push_back({all_sims[at_], all_idx[at_]});
      }
    keep_best(list, s.k);
  }
  return best;
}

struct Row {
  std::int64_t source = 0, label = 0, pool = 0;
  float sim = 0;
};

// Rows of the tag: query by query, neighbour by neighbour. With dedup, a pool
// image keeps only its most similar query's row (ties: the first query).
std::vector<Row> plan_rows(const std::vector<std::vector<Candidate>>& best, const Queries& q, bool dedup) {
  std::vector<Row> rows;
  for (std::size_t i = 0; i < best.size(); ++i)
    for (const auto& c : best[i]) rows.push_back({static_cast<std::int64_t>(i), q.label[i], c.pool, c.sim});
  if (!dedup) return rows;
  std::map<std::int64_t, std::size_t> owner;  // pool index -> row kept
  for (std::size_t r = 0; r < rows.size(); ++r) {
    auto it = owner.find(rows[r].pool);
    if (it == owner.end())
      owner.emplace(rows[r].pool, r);
    else if (rows[r].sim > rows[it->second].sim)
      it->second = r;
  }
  std::vector<Row> kept;
  for (std::size_t r = 0; r < rows.size(); ++r)
    if (owner.at(rows[r].pool) == r) kept.push_back(rows[r]);
  return kept;
}

void create_tag(store::Store& st, const std::string& group, const RetrieveSettings& s, std::int64_t count,
                std::int64_t units) {
  const auto r = s.resolution;
  st.require_free_space(count * (r * r * 3 + 4 * 8) + units + (1 << 20), group);
  if (!st.has("/samples")) {
    st.create_group("/samples");
    st.flush();
  }
  store::NewGroups created(st);
  auto& g = created.add(group);
  g.set_attribute("settings", retrieve_declaration().text(s));
  g.set_attribute("mode", std::string("retrieval"));
  store::set_attributes(g, retrieve_declaration().attributes(s));
  g.create_dataset("images", at::kByte, {count, r, r, 3});
  for (const char* name : {"label", "source", "pool_index"}) g.create_dataset(name, at::kLong, {count});
  g.create_dataset("similarity", at::kFloat, {count});
  store::UnitLedger::create(g, units);
  created.commit();
}

at::Tensor stored_image(const at::Tensor& image, std::int64_t size) {
  return data::center_crop(data::resize_shorter_side(image, size), size, size);
}

Queries all_of(const data::Dataset& real) {
  Queries q;
  for (std::int64_t i = 0; i < real.size(); ++i) {
    q.index.push_back(i);
    q.label.push_back(real.get(i).label);
  }
  return q;
}

const char* const kRecoverSource =
    "Nothing else of the store depends on it: remove the store (or name another store.path) and rerun.";

// A store without /embeddings (no dinv embed yet) gets a /source of the whole
// [data] set, so that syn.format = store finds the class names. Its rows are
// written after its layout: a ledger of one unit records that they are, so
// that a run stopped between the two writes them on its rerun.
void create_source(store::Store& st, const data::Dataset& real, std::int64_t n) {
  store::NewGroups created(st);
  auto& source = created.add("/source");
  source.set_attribute("class_names", real.class_names());
  source.set_attribute("dataset_fingerprint", real.fingerprint());
  source.set_attribute("dataset", real.describe());
  source.create_dataset("index", at::kLong, {n});
  source.create_dataset("label", at::kLong, {n});
  store::UnitLedger::create(source, 1);
  created.commit();
}

const char* const kSourceHint =
    "retrieve queries the real images of the store's /source: use the [data] it was made with";

// The real images to query: those of dinv embed's /source (all of its units
// finished), else the whole [data] set. Only reads the store: whatever the
// run writes there comes after the features (record_source), so that a run
// stopped while computing them leaves the store as it found it, and its rerun
// ends with the bytes of an uninterrupted run (HDF5 places what a later
// session creates elsewhere in the file).
Queries queries_of(store::Store& st, const data::Dataset& real) {
  if (st.has("/embeddings")) {
    st.require_attribute("/source", "dataset_fingerprint", real.fingerprint(), kSourceHint);
    store::require_finished(st, "/embeddings", "embedding units (which write /source)",
                            "rerun 'dinv embed' to complete them before retrieve, or name another store.path");
    Queries q;
    const at::Tensor index = st.dataset("/source/index").read_all();
    const at::Tensor label = st.dataset("/source/label").read_all();
    q.index.assign(index.data_ptr<std::int64_t>(), index.data_ptr<std::int64_t>() + index.numel());
    q.label.assign(label.data_ptr<std::int64_t>(), label.data_ptr<std::int64_t>() + label.numel());
    return q;
  }
  // A /source of other data (an earlier retrieve) is refused now, before any work.
  if (st.has("/source") && !store::half_created(st, "/source", {"dataset_fingerprint"}))
    st.require_attribute("/source", "dataset_fingerprint", real.fingerprint(), kSourceHint);
  return all_of(real);
}

// The /source of a store without /embeddings (no dinv embed yet): the whole
// [data] set q, so that syn.format = store finds the class names.
void record_source(const dist::World& world, store::Store& st, const data::Dataset& real, const Queries& q) {
  if (st.has("/embeddings")) return;  // dinv embed's, checked by queries_of
  const auto n = static_cast<std::int64_t>(q.index.size());
  if (store::half_created(st, "/source", {"dataset_fingerprint"}))
    store::set_aside(st, "/source", "retrieve", kRecoverSource);
  if (!st.has("/source")) create_source(st, real, n);
  st.require_attribute("/source", "dataset_fingerprint", real.fingerprint(), kSourceHint);
  st.require_dataset("/source/index", at::kLong, {n});
  store::UnitLedger ledger(st, "/source", 1);
  // A collective: every rank has read the ledger before the root marks it.
  if (dist::any_rank(world, !ledger.is_done(0))) {
    if (world.is_root()) {
      st.dataset("/source/index").write_rows(0, at::tensor(q.index, at::kLong), h5::Transfer::independent);
      st.dataset("/source/label").write_rows(0, at::tensor(q.label, at::kLong), h5::Transfer::independent);
      ledger.mark_done_independent(0);
    }
    st.flush();
  }
}

// The run fails past max_bad_share, naming the first bad pool images (their
// decoding error names the file).
void check_bad_share(store::Store& cache, const data::Dataset& pool, const RetrieveSettings& s, std::int64_t* count) {
  const at::Tensor bad = cache.dataset("/pool/bad").read_all();
  *count = bad.ne(0).sum().item<std::int64_t>();
  const auto n = bad.numel();
  if (*count == 0 || static_cast<double>(*count) <= s.max_bad_share * static_cast<double>(n)) return;
  std::string names;
  const at::Tensor where = bad.nonzero().flatten();
  for (std::int64_t i = 0; i < std::min<std::int64_t>(where.numel(), 10); ++i) {
    const auto idx = where[i].item<std::int64_t>();
    try {
      pool.get(idx);
      names += "\n  pool image " + std::to_string(idx);
    } catch (const Error& e) {
      names += "\n  pool image " + std::to_string(idx) + ": " + e.what();
    }
  }
  throw IoError("retrieve: " + std::to_string(*count) + " of " + std::to_string(n) + " pool images did not decode, " +
                "more than retrieve.max_bad_share = " + std::to_string(s.max_bad_share) + " of the pool:" + names +
                (where.numel() > 10 ? "\n  ..." : ""));
}

// The tag: rows in fixed units, each written by one rank and marked done.
// Returns whether a stop signal stopped it (on any rank).
bool write_tag(dist::World& world, store::Store& st, const std::string& group, const RetrieveSettings& s,
               const std::vector<Row>& rows, const data::Dataset& pool) {
  const auto count = static_cast<std::int64_t>(rows.size());
  const auto units = dist::chunk_count(count, s.shard_size);
  const auto shard = [&](std::int64_t u) { return dist::chunk(count, s.shard_size, u); };
  std::vector<at::Tensor> images;  // the shard under way
  stage::UnitStage stage;
  stage.prepare = [&](store::Store& st) {
    store::set_aside_damaged_tag(st, group, "retrieve",
                                 "The rest of the store is intact: name another retrieve.tag, or another store.path.");
    if (!st.has(group)) create_tag(st, group, s, count, units);
    store::require_settings(st, group, retrieve_declaration(), s,
                            "The tag '" + s.tag + "' was written with other settings: choose another retrieve.tag.");
    return stage::Plan{"retrieve", group, units, "shard", "images", "retrieve " + group + " (rank 0)"};
  };
  stage.progress_of = [&](std::int64_t u) { return shard(u).size(); };
  stage.work = [&](std::int64_t u, Progress& progress) {
    images.clear();
    for (auto i = shard(u).begin; i < shard(u).end; ++i)
      images.push_back(stored_image(pool.get(rows[static_cast<std::size_t>(i)].pool).image, s.resolution));
    progress.advance(shard(u).size());
    return stage::UnitEnd::finished;
  };
  stage.write = [&](store::Store& st, std::int64_t u) {
    const auto r = shard(u);
    std::vector<std::int64_t> label, source, pool_index;
    std::vector<float> sim;
    for (auto i = r.begin; i < r.end; ++i) {
      const Row& row = rows[static_cast<std::size_t>(i)];
      label.push_back(row.label);
      source.push_back(row.source);
      pool_index.push_back(row.pool);
      sim.push_back(row.sim);
    }
    auto write = [&](const std::string& name, const at::Tensor& values) {
      st.dataset(group + name).write_rows(r.begin, values, h5::Transfer::independent);
    };
    write("/images", at::stack(images).contiguous());
    write("/label", at::tensor(label, at::kLong));
    write("/source", at::tensor(source, at::kLong));
    write("/pool_index", at::tensor(pool_index, at::kLong));
    write("/similarity", at::tensor(sim, at::kFloat));
  };
  stage.items_of = [&](std::int64_t u) { return "rows " + dist::range_text(shard(u)); };
  return stage::run_units(world, st, stage).stopped;
}

}  // namespace

RetrieveOutcome run_retrieve(dist::World& world, const RetrieveSettings& settings, const data::Dataset& real,
                             const data::Dataset& pool, const std::string& store_path, const std::string& config_text) {
  RetrieveSettings s = settings;
  RetrieveOutcome out;
  out.tag = s.tag;
  if (pool.size() < s.k)
    throw ConfigError("retrieve.k = " + std::to_string(s.k) + " is more than the " + std::to_string(pool.size()) +
                      " images of the pool (" + pool.describe() + ")");
  Encoder enc = load_encoder(s.model, world.device());
  auto st = store::Store::open_or_create(store_path, world.comm(), config_text);
  const Queries q = queries_of(st, real);
  if (q.index.empty()) throw ConfigError("retrieve: no real images to query ([data] is empty)");
  if (s.resolution == 0) s.resolution = real.get(q.index.front()).image.size(0);

  // Features, cached and resumable per shard.
  auto cache = store::Store::open_or_create(s.cache.empty() ? store_path + ".retrieve_features.h5" : s.cache,
                                            world.comm(), config_text);
  const std::string unit_key = " model=" + enc.fingerprint + " shard_size=" + std::to_string(s.shard_size) +
                               " batch_size=" + std::to_string(s.batch_size);
  std::vector<std::int64_t> pool_indices(static_cast<std::size_t>(pool.size()));
  for (std::int64_t i = 0; i < pool.size(); ++i) pool_indices[static_cast<std::size_t>(i)] = i;
  const std::string pool_key = "pool=" + pool.fingerprint() + unit_key;
  // The queries are identified by the data and every index (a subset of the same size is other data).
  const std::string index_hash = data::content_hash(q.index.data(), q.index.size() * sizeof(std::int64_t));
  std::ostringstream qk;
  qk << "data=" << real.fingerprint() << " indices=" << q.index.size() << ":" << index_hash << unit_key;
  out.stopped = compute_features(world, cache, "/query", real, q.index, enc, s, false, qk.str()) ||
                compute_features(world, cache, "/pool", pool, pool_indices, enc, s, true, pool_key);
  if (out.stopped) return out;
  cache.flush();
  check_bad_share(cache, pool, s, &out.bad_pool);
  if (pool.size() - out.bad_pool < s.k)
    throw ConfigError("retrieve.k = " + std::to_string(s.k) + " is more than the " +
                      std::to_string(pool.size() - out.bad_pool) + " usable images of the pool");
  const auto best = top_k(world, cache, static_cast<std::int64_t>(q.index.size()), pool.size(), s);
  cache.close();

  const auto rows = plan_rows(best, q, s.dedup);
  out.rows = static_cast<std::int64_t>(rows.size());
  const std::string group = "/samples/" + s.tag;
  s.features = pool_key + " " + qk.str();
  record_source(world, st, real, q);
  out.stopped = write_tag(world, st, group, s, rows, pool);
  st.close();
  return out;
}

}  // namespace dinv::retrieve
