#include "dinv/inversion/unit_trainer.h"

#include <array>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include "dinv/core/error.h"
#include "dinv/core/seed.h"

namespace dinv::inversion {

std::vector<UnitPlan> plan_units(std::int64_t num_images, std::int64_t group_size, std::int64_t pack_units) {
  if (group_size < 1 || pack_units < 1) throw Error("internal: plan_units with group_size/pack_units < 1");
  std::vector<UnitPlan> units;
  const auto groups = dist::chunk_count(num_images, group_size);
  for (std::int64_t g = 0; g < groups; ++g) {
    if (g % pack_units == 0) units.push_back({static_cast<std::int64_t>(units.size()), {}});
    units.back().groups.push_back(dist::chunk(num_images, group_size, g));
  }
  return units;
}

namespace {

// The method's parameterisation: a bias-free Linear(group_size -> T*D) applied
// to one-hot image ids, PyTorch's default init (uniform +-1/sqrt(fan_in)).
at::Tensor initial_table(std::int64_t images, const EmbedSettings& s, std::int64_t cond_dim, at::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(s.group_size));
  at::Tensor weight = at::empty({s.num_tokens * cond_dim, s.group_size}, at::kFloat);
  weight.uniform_(-bound, bound, gen);
  return weight.t().narrow(0, 0, images).reshape({images, s.num_tokens, cond_dim}).contiguous();
}

std::vector<at::Tensor> initial_tables(const UnitPlan& plan, const EmbedSettings& s, std::int64_t cond_dim,
                                       at::Generator& gen, c10::Device device) {
  std::vector<at::Tensor> tables;
  for (const auto& g : plan.groups)
    tables.push_back(initial_table(g.size(), s, cond_dim, gen).to(device).set_requires_grad(true));
  return tables;
}

}  // namespace

UnitTrainer::UnitTrainer(const FrozenModel& model, const EmbedSettings& settings, UnitPlan plan, Posterior posterior,
                         c10::Device device)
    : model_(model),
      settings_(settings),
      plan_(std::move(plan)),
      posterior_{posterior.mean.to(device, at::kFloat), posterior.std.to(device, at::kFloat)},
      device_(device),
      generator_(at::detail::createCPUGenerator(
          stream_seed(settings.seed, Stage::embed, {static_cast<std::uint64_t>(plan_.unit)}))),
      tables_(initial_tables(plan_, settings_, model.cond_dim, generator_, device)),
      optimizer_(tables_, settings.adam),
      last_loss_(at::full({plan_.images().size()}, NAN, at::kFloat)) {
  if (posterior_.mean.size(0) != plan_.images().size())
    throw Error("internal: unit " + std::to_string(plan_.unit) + " has " + std::to_string(plan_.images().size()) +
                " images but " + std::to_string(posterior_.mean.size(0)) + " posteriors");
}

dist::Range UnitTrainer::batch_of(std::size_t group, std::int64_t step) const {
  const auto n = plan_.groups[group].size();
  const auto batches = dist::chunk_count(n, settings_.batch_size);
  return dist::chunk(n, settings_.batch_size, step % batches);
}

std::vector<StepNoise> UnitTrainer::draw_noise() {
  std::vector<StepNoise> out;
  const auto latent_shape = posterior_.mean.sizes().slice(1).vec();
  for (std::size_t g = 0; g < plan_.groups.size(); ++g) {
    std::vector<std::int64_t> shape{batch_of(g, steps_done()).size()};
    shape.insert(shape.end(), latent_shape.begin(), latent_shape.end());
    StepNoise n;
    n.posterior_eps = at::randn(shape, generator_, at::kFloat);
    n.noise = at::randn(shape, generator_, at::kFloat);
    n.timesteps = at::randint(0, model_.num_train_timesteps, {shape[0]}, generator_, at::kLong);
    out.push_back(std::move(n));
  }
  return out;
}

double UnitTrainer::step() { return step_with(draw_noise()); }

double UnitTrainer::step_with(const std::vector<StepNoise>& noise) {
  std::vector<at::Tensor> x0, eps, ts, conds;
  std::vector<std::int64_t> image_offsets, counts;
  std::int64_t group_start = 0;
  for (std::size_t g = 0; g < plan_.groups.size(); ++g) {
    const auto r = batch_of(g, steps_done());
    const auto& n = noise.at(g);
    at::Tensor mean = posterior_.mean.narrow(0, group_start + r.begin, r.size());
    at::Tensor std = posterior_.std.narrow(0, group_start + r.begin, r.size());
    x0.push_back((mean + std * n.posterior_eps.to(device_)) * model_.scaling_factor);
    eps.push_back(n.noise.to(device_));
    ts.push_back(n.timesteps.to(device_));
    conds.push_back(tables_[g].narrow(0, r.begin, r.size()));
    image_offsets.push_back(group_start + r.begin);
    counts.push_back(r.size());
    group_start += plan_.groups[g].size();
  }
  const at::Tensor latents = at::cat(x0), noise_all = at::cat(eps), t = at::cat(ts);
  at::Tensor noisy, target;
  {
    at::NoGradGuard no_grad;
    noisy = model_.add_noise(latents, noise_all, t);
    target = model_.target(latents, noise_all, t).to(at::kFloat);
  }
  const at::Tensor pred = model_.predict(noisy, t, at::cat(conds)).to(at::kFloat);
  // Per-sample MSE; each group's loss is the mean over its batch, as if it
  // were trained alone, and the groups' losses add up (separate gradients).
  const at::Tensor per_sample = (pred - target).pow(2).flatten(1).mean(1);
  std::vector<at::Tensor> group_losses;
  for (const auto& part : per_sample.split_with_sizes(counts)) group_losses.push_back(part.mean());
  const at::Tensor total = at::stack(group_losses).sum();
  optimizer_.zero_grad();
  torch::autograd::backward({total});
  optimizer_.step();

  const at::Tensor losses = per_sample.detach().cpu();
  std::int64_t at_sample = 0;
  for (std::size_t g = 0; g < counts.size(); ++g) {
    last_loss_.narrow(0, image_offsets[g], counts[g]).copy_(losses.narrow(0, at_sample, counts[g]));
    at_sample += counts[g];
  }
  return total.item<double>() / static_cast<double>(counts.size());
}

at::Tensor UnitTrainer::embeddings() const {
  std::vector<at::Tensor> parts;
  for (const auto& t : tables_) parts.push_back(t.detach().to(at::kCPU, at::kFloat));
  return at::cat(parts).contiguous();
}

void UnitTrainer::set_embeddings(const at::Tensor& embeddings) {
  at::NoGradGuard no_grad;
  std::int64_t start = 0;
  for (auto& t : tables_) {
    t.copy_(embeddings.narrow(0, start, t.size(0)));
    start += t.size(0);
  }
}

std::map<std::string, at::Tensor> UnitTrainer::state() const {
  std::map<std::string, at::Tensor> s;
  auto& opt = const_cast<AdamW&>(optimizer_);
  for (std::size_t g = 0; g < tables_.size(); ++g) {
    const auto k = std::to_string(g);
    s["table." + k] = tables_[g].detach().cpu().contiguous();
    s["exp_avg." + k] = opt.exp_avg()[g].cpu().contiguous();
    s["exp_avg_sq." + k] = opt.exp_avg_sq()[g].cpu().contiguous();
  }
  s["step"] = at::full({1}, optimizer_.steps_taken(), at::kLong);
  s["generator"] = const_cast<at::Generator&>(generator_).get_state();
  s["last_loss"] = last_loss_.clone();
  return s;
}

void UnitTrainer::load_state(const std::map<std::string, at::Tensor>& state, const std::string& origin) {
  // Everything is checked before anything is changed: a checkpoint of other
  // settings or a damaged one is refused naming the file and the tensor.
  auto get = [&](const std::string& name, at::ScalarType dtype, const std::vector<std::int64_t>& shape) {
    auto it = state.find(name);
    if (it == state.end()) throw IoError(origin + ": checkpoint tensor '" + name + "' is missing");
    const at::Tensor& t = it->second;
    if (t.scalar_type() != dtype || t.sizes().vec() != shape)
      throw IoError(origin + ": checkpoint tensor '" + name + "' is " + std::string(c10::toString(t.scalar_type())) +
                    " " + c10::str(t.sizes()) + ", expected " + c10::toString(dtype) + " " +
                    c10::str(c10::IntArrayRef(shape)));
    return t;
  };
  std::vector<std::array<at::Tensor, 3>> tables;
  for (std::size_t g = 0; g < tables_.size(); ++g) {
    const auto k = std::to_string(g);
    const auto shape = tables_[g].sizes().vec();
    tables.push_back({get("table." + k, at::kFloat, shape), get("exp_avg." + k, at::kFloat, shape),
                      get("exp_avg_sq." + k, at::kFloat, shape)});
  }
  const at::Tensor step = get("step", at::kLong, {1});
  const std::int64_t steps = step.item<std::int64_t>();
  if (steps < 0 || steps > settings_.steps)
    throw IoError(origin + ": checkpoint tensor 'step' is " + std::to_string(steps) + ", expected 0.." +
                  std::to_string(settings_.steps) + " (embed.steps)");
  const at::Tensor generator = get("generator", at::kByte, generator_.get_state().sizes().vec());
  const at::Tensor last_loss = get("last_loss", at::kFloat, last_loss_.sizes().vec());
  at::NoGradGuard no_grad;
  try {
    generator_.set_state(generator);
  } catch (const c10::Error& e) {
    throw IoError(origin +
                  ": checkpoint tensor 'generator' is not a random generator state: " + e.what_without_backtrace());
  }
  for (std::size_t g = 0; g < tables_.size(); ++g) {
    tables_[g].copy_(tables[g][0]);
    optimizer_.exp_avg()[g].copy_(tables[g][1]);
    optimizer_.exp_avg_sq()[g].copy_(tables[g][2]);
  }
  optimizer_.set_steps_taken(steps);
  last_loss_.copy_(last_loss);
}

}  // namespace dinv::inversion
