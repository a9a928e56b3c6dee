// Stage 1's unit of work: `pack` consecutive groups of images, each with its
// own embedding table [n, T, D] and AdamW state, trained by the method's
// denoising objective through the frozen model. Packing groups only batches
// their UNet calls together; each group's loss and optimizer are separate, so
// the result of a group does not depend on what it was packed with... as long
// as the packing itself is fixed, which is why it is a global setting.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "dinv/dist/partition.h"
#include "dinv/inversion/adamw.h"
#include "dinv/inversion/frozen_model.h"

namespace dinv::inversion {

struct EmbedSettings {
  std::int64_t num_tokens = 5;
  std::int64_t group_size = 100;
  std::int64_t batch_size = 50;
  std::int64_t steps = 6000;
  std::int64_t pack_units = 1;  // groups per work unit
  std::int64_t checkpoint_every = 500;
  std::int64_t resolution = 128;
  std::string interpolation = "bicubic";
  AdamWOptions adam;
  std::uint64_t seed = 0;
  std::string dtype = "fp32";   // the UNet/VAE dtype the model is loaded with
  std::int64_t num_images = 0;  // images of the dataset, from the first (0: all)
};

// A work unit: consecutive groups of consecutive images.
struct UnitPlan {
  std::int64_t unit = 0;
  std::vector<dist::Range> groups;  // image index ranges, one per group
  dist::Range images() const { return {groups.front().begin, groups.back().end}; }
};

// Images [0, num_images) cut into groups of `group_size` (the last group may
// be shorter) and the groups into units of `pack_units`.
std::vector<UnitPlan> plan_units(std::int64_t num_images, std::int64_t group_size, std::int64_t pack_units);

// The randomness of one group's step, drawn from the unit's generator (or
// given by a test that feeds the reference implementation the same numbers).
struct StepNoise {
  at::Tensor posterior_eps;  // [b, C, h, w]
  at::Tensor noise;          // [b, C, h, w]
  at::Tensor timesteps;      // [b] int64
};

class UnitTrainer {
 public:
  // `posterior`: the cached VAE posterior of the unit's images, in order.
  UnitTrainer(const FrozenModel& model, const EmbedSettings& settings, UnitPlan plan, Posterior posterior,
              c10::Device device);

  // One optimizer step: every group takes its next batch (in order, no shuffling).
  // Returns the mean loss over the unit's groups.
  double step();
  // The same step with the randomness given (parity tests).
  double step_with(const std::vector<StepNoise>& noise);

  std::int64_t steps_done() const { return optimizer_.steps_taken(); }
  const UnitPlan& plan() const { return plan_; }
  // [n_images, T, D] float32 on CPU.
  at::Tensor embeddings() const;
  // Each image's loss the last time its batch was trained (NaN before).
  at::Tensor last_loss() const { return last_loss_; }
  // Initial tables for tests: replace before the first step.
  void set_embeddings(const at::Tensor& embeddings);

  // Everything needed to continue bit for bit: tables, moments, step, generator.
  std::map<std::string, at::Tensor> state() const;
  void load_state(const std::map<std::string, at::Tensor>& state, const std::string& origin);

 private:
  std::vector<StepNoise> draw_noise();
  // Batch k of group g: image positions within the group.
  dist::Range batch_of(std::size_t group, std::int64_t step) const;

  const FrozenModel& model_;
  EmbedSettings settings_;
  UnitPlan plan_;
  Posterior posterior_;  // on device
  c10::Device device_;
  at::Generator generator_;
  std::vector<at::Tensor> tables_;  // one [n_g, T, D] per group, requires grad
  AdamW optimizer_;
  at::Tensor last_loss_;
};

}  // namespace dinv::inversion
