// The DDPM noise schedule. Betas and alphas_cumprod are computed with the same
// float32 tensor operations diffusers uses, so that every sampler built on them
// starts from bitwise the same numbers.
#include "dinv/diffusion/noise_schedule.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "dinv/io/files.h"
#include "dinv/io/json.h"

#include "dinv/core/error.h"

namespace dinv::diffusion {

namespace {

using nlohmann::json;

template <typename T>
T read_key(const json& j, const char* key, T fallback, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw ConfigError(origin + ": key '" + key + "' has value " + it->dump() + " of the wrong type");
  }
}

// Integers: a float in the file must be a whole number int64 holds (a cast
// of 1e30 would be undefined).
template <>
std::int64_t read_key<std::int64_t>(const json& j, const char* key, std::int64_t fallback, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_number_unsigned() || it->is_number_float()) {
    const double d = it->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return static_cast<std::int64_t>(d);
    throw ConfigError(origin + ": key '" + key + "' has value " + it->dump() + ", not an integer dinv can use");
  }
  throw ConfigError(origin + ": key '" + key + "' has value " + it->dump() + " of the wrong type");
}

template <typename T>
std::optional<T> read_optional(const json& j, const char* key, const std::string& origin) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return read_key<T>(j, key, T{}, origin);
}

// diffusers writes configs with Python's json module, which spells infinite
// and NaN floats as the bare words -Infinity, Infinity and NaN (e.g.
// "lambda_min_clipped": -Infinity). Strict JSON has no such literals: turn
// them, outside strings, into null (the key's default).
std::string replace_nonfinite_literals(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size())
        out += text[++i];
      else if (ch == '"')
        in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    bool replaced = false;
    for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
      const std::size_t n = std::char_traits<char>::length(word);
      if (text.compare(i, n, word) == 0) {
        out += "null";
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  return out;
}

// The Glide cosine schedule: betas from the continuous alpha_bar(t), capped.
at::Tensor squaredcos_cap_v2_betas(std::int64_t n) {
  auto alpha_bar = [](double t) {
    double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  std::vector<float> betas(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    double t1 = static_cast<double>(i) / n, t2 = static_cast<double>(i + 1) / n;
    betas[i] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return at::tensor(betas, at::kFloat);
}

}  // namespace

SchedulerConfig SchedulerConfig::from_json(const std::string& text, const std::string& origin) {
  json j;
  io::check_json_depth(text, origin);
  try {
    j = json::parse(replace_nonfinite_literals(text));
  } catch (const json::exception& e) {
    throw IoError(origin + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw IoError(origin + ": expected a JSON object");
  SchedulerConfig c;
  c.class_name = read_key<std::string>(j, "_class_name", "", origin);
  c.num_train_timesteps = read_key<std::int64_t>(j, "num_train_timesteps", c.num_train_timesteps, origin);
  // Bounded above too: the schedule's tables hold one value per timestep.
  if (c.num_train_timesteps < 2 || c.num_train_timesteps > kMaxTrainTimesteps)
    throw ConfigError(origin + ": num_train_timesteps " + std::to_string(c.num_train_timesteps) +
                      " must be at least 2 and at most " + std::to_string(kMaxTrainTimesteps));
  c.beta_start = read_key<double>(j, "beta_start", c.beta_start, origin);
  c.beta_end = read_key<double>(j, "beta_end", c.beta_end, origin);
  c.beta_schedule = parse_choice(kBetaScheduleNames, read_key<std::string>(j, "beta_schedule", "linear", origin),
                                 origin, "beta_schedule");
  c.trained_betas = read_key<std::vector<double>>(j, "trained_betas", {}, origin);
  if (!c.trained_betas.empty() && static_cast<std::int64_t>(c.trained_betas.size()) != c.num_train_timesteps)
    throw ConfigError(origin + ": trained_betas has " + std::to_string(c.trained_betas.size()) +
                      " values, num_train_timesteps is " + std::to_string(c.num_train_timesteps));
  c.prediction_type = parse_choice(kPredictionTypeNames, read_key<std::string>(j, "prediction_type", "epsilon", origin),
                                   origin, "prediction_type");
  c.steps_offset = read_key<std::int64_t>(j, "steps_offset", c.steps_offset, origin);
  c.clip_sample_range = read_key<double>(j, "clip_sample_range", c.clip_sample_range, origin);
  if (auto s = read_optional<std::string>(j, "timestep_spacing", origin))
    c.timestep_spacing = parse_choice(kTimestepSpacingNames, *s, origin, "timestep_spacing");
  c.set_alpha_to_one = read_optional<bool>(j, "set_alpha_to_one", origin);
  c.clip_sample = read_optional<bool>(j, "clip_sample", origin);
  c.skip_prk_steps = read_optional<bool>(j, "skip_prk_steps", origin);
  c.solver_order = read_key<std::int64_t>(j, "solver_order", c.solver_order, origin);
  c.algorithm_type = read_key<std::string>(j, "algorithm_type", c.algorithm_type, origin);
  c.solver_type = read_key<std::string>(j, "solver_type", c.solver_type, origin);
  c.lower_order_final = read_key<bool>(j, "lower_order_final", c.lower_order_final, origin);
  c.euler_at_final = read_key<bool>(j, "euler_at_final", c.euler_at_final, origin);
  c.final_sigmas_type = read_key<std::string>(j, "final_sigmas_type", c.final_sigmas_type, origin);
  c.use_karras_sigmas = read_key<bool>(j, "use_karras_sigmas", c.use_karras_sigmas, origin);
  c.interpolation_type = read_key<std::string>(j, "interpolation_type", c.interpolation_type, origin);
  if (j.contains("lambda_min_clipped") && !j.at("lambda_min_clipped").is_null())
    throw ConfigError(origin + ": lambda_min_clipped " + j.at("lambda_min_clipped").dump() +
                      " is not supported by dinv (allowed: -Infinity, no clipping)");
  const std::string variance_type = read_key<std::string>(j, "variance_type", "", origin);
  // Learned variances mean a model with twice the output channels.
  if (variance_type == "learned" || variance_type == "learned_range")
    throw ConfigError(origin + ": variance_type '" + variance_type +
                      "' is not supported by dinv (allowed: null, fixed_small, fixed_large)");
  // Options that change the numbers and that dinv does not implement: refuse
  // them rather than silently sampling something else.
  for (const char* key : {"thresholding", "rescale_betas_zero_snr", "use_exponential_sigmas", "use_beta_sigmas",
                          "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting"})
    if (read_key<bool>(j, key, false, origin))
      throw ConfigError(origin + ": " + key + " = true is not supported by dinv (allowed: false)");
  return c;
}

SchedulerConfig SchedulerConfig::from_file(const std::string& path) {
  return from_json(io::read_text_file(path), path);
}

NoiseSchedule::NoiseSchedule(const SchedulerConfig& config) : config_(config) {
  const auto n = config.num_train_timesteps;
  if (!config.trained_betas.empty()) {
    betas_ = at::tensor(config.trained_betas, at::kDouble).to(at::kFloat);
  } else {
    switch (config.beta_schedule) {
      case BetaSchedule::linear:
        betas_ = at::linspace(config.beta_start, config.beta_end, n, at::kFloat);
        break;
      case BetaSchedule::scaled_linear:
        // Linear in sqrt(beta), the latent-diffusion schedule.
        betas_ = at::linspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), n, at::kFloat).pow(2);
        break;
      case BetaSchedule::squaredcos_cap_v2:
        betas_ = squaredcos_cap_v2_betas(n);
        break;
    }
  }
  alphas_cumprod_ = at::cumprod(1.0 - betas_, 0);
}

at::Tensor NoiseSchedule::sigmas() const { return ((1 - alphas_cumprod_) / alphas_cumprod_).pow(0.5); }

void NoiseSchedule::check_timesteps(const at::Tensor& t, const at::Tensor& x0, const char* what) const {
  if (t.dim() != 1 || t.size(0) != x0.size(0))
    throw Error(std::string(what) + ": timesteps must be [B] with B = " + std::to_string(x0.size(0)) +
                " (the batch size), got " + std::to_string(t.dim()) + " dims of " + std::to_string(t.numel()));
  if (t.numel() == 0) return;
  auto lo = t.min().item<std::int64_t>(), hi = t.max().item<std::int64_t>();
  if (lo < 0 || hi >= num_train_timesteps())
    throw Error(std::string(what) + ": timestep " + std::to_string(lo < 0 ? lo : hi) + " is outside [0, " +
                std::to_string(num_train_timesteps() - 1) + "]");
}

at::Tensor NoiseSchedule::gather_per_sample(const at::Tensor& values, const at::Tensor& t,
                                            const at::Tensor& like) const {
  auto v = values.to(like.device(), like.scalar_type()).index_select(0, t.to(like.device(), at::kLong));
  std::vector<std::int64_t> shape(static_cast<std::size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return v.view(shape);
}

at::Tensor NoiseSchedule::add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const {
  check_timesteps(t, x0, "add_noise");
  auto abar = gather_per_sample(alphas_cumprod_, t, x0);
  return abar.pow(0.5) * x0 + (1 - abar).pow(0.5) * noise;
}

at::Tensor NoiseSchedule::get_velocity(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const {
  check_timesteps(t, x0, "get_velocity");
  auto abar = gather_per_sample(alphas_cumprod_, t, x0);
  return abar.pow(0.5) * noise - (1 - abar).pow(0.5) * x0;
}

at::Tensor NoiseSchedule::training_target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t) const {
  switch (prediction_type()) {
    case PredictionType::epsilon:
      return noise;
    case PredictionType::v_prediction:
      return get_velocity(x0, noise, t);
    case PredictionType::sample:
      return x0;
  }
  return noise;
}

namespace sigma_math {

std::vector<double> interp(const std::vector<double>& x, const std::vector<double>& table) {
  std::vector<double> out;
  out.reserve(x.size());
  const auto last = static_cast<double>(table.size() - 1);
  for (double xi : x) {
    if (xi <= 0) {
      out.push_back(table.front());
    } else if (xi >= last) {
      out.push_back(table.back());
    } else {
      auto i = static_cast<std::size_t>(std::floor(xi));
      double w = xi - static_cast<double>(i);
      // numpy.interp's form: slope * (x - xi) + yi.
      double slope = table[i + 1] - table[i];
      out.push_back(slope * w + table[i]);
    }
  }
  return out;
}

std::vector<double> karras(double sigma_min, double sigma_max, std::int64_t n) {
  const double rho = 7.0;
  double min_inv = std::pow(sigma_min, 1 / rho), max_inv = std::pow(sigma_max, 1 / rho);
  std::vector<double> out;
  for (std::int64_t i = 0; i < n; ++i) {
    double ramp = n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1);
    out.push_back(std::pow(max_inv + ramp * (min_inv - max_inv), rho));
  }
  return out;
}

double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // The last table index whose log-sigma is <= log_sigma (0 if none), kept
  // one short of the end so that there is an upper neighbour.
  std::int64_t low = 0;
  for (std::size_t i = 0; i < log_sigmas.size(); ++i)
    if (log_sigma - static_cast<double>(log_sigmas[i]) >= 0) low = static_cast<std::int64_t>(i);
  low = std::min<std::int64_t>(low, static_cast<std::int64_t>(log_sigmas.size()) - 2);
  const double lo = log_sigmas[low], hi = log_sigmas[low + 1];
  double w = std::clamp((lo - log_sigma) / (lo - hi), 0.0, 1.0);
  return (1 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

}  // namespace sigma_math

}  // namespace dinv::diffusion
