// The PyTorch oracle: fixtures written by tools/reference/make_fixtures.py (float64 reference from the same F32
// initial weights). For every fixture config: logits, losses, every parameter gradient, and the losses, gradient
// norms, learning rates and weights over 5 AdamW steps with clipping must match within 1e-4 relative error.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "check.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace dsmoe;

namespace {

constexpr double kTol = 1e-4;

std::string fixture_root() {
  const char* env = std::getenv("DSMOE_FIXTURES");
  return env ? env : "fixtures";
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  if (!fs::is_directory(fixture_root())) return names;
  for (const auto& entry : fs::directory_iterator(fixture_root()))
    if (fs::exists(entry.path() / "fixture.safetensors")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Compare every parameter of `params` with tensors named prefix + HF name in the fixture; returns the worst
// relative error (printed so that the margin to the tolerance is visible in the log).
double expect_params_close(const ParamSet& params, const io::SafetensorsArchive& fx, const std::string& prefix,
                           double tol) {
  double worst = 0;
  for (const TensorSpec& spec : params.registry) {
    const int64_t n_parts = spec.n_stacked == 0 ? 1 : spec.n_stacked;
    const int64_t slice = spec.numel() / n_parts;
    for (int64_t e = 0; e < n_parts; ++e) {
      const std::string name = spec.n_stacked == 0 ? spec.name : spec.hf_name(e);
      std::vector<float> want = fx.read_f32(prefix + name);
      EXPECT_EQ(static_cast<int64_t>(want.size()), slice) << prefix + name;
      if (static_cast<int64_t>(want.size()) != slice) continue;
      DSMOE_EXPECT_CLOSE(prefix + name, params.ptr(spec) + e * slice, want.data(), slice, tol);
      worst = std::max(worst, dsmoe::testing::compare(params.ptr(spec) + e * slice, want.data(), slice).rel);
    }
  }
  return worst;
}

float scalar(const io::SafetensorsArchive& fx, const std::string& name, int64_t i = 0) {
  return fx.read_f32(name).at(i);
}

}  // namespace

class Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Fixture, MatchesPyTorch) {
  const fs::path dir = fs::path(fixture_root()) / GetParam();
  auto model = model_load((dir / "model").string());
  io::SafetensorsArchive fx = io::SafetensorsArchive::open((dir / "fixture.safetensors").string());
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(dir / "fixture.json"));
  const int64_t B = meta.at("batch"), S = meta.at("seq_len"), V = model->config.vocab_size;
  std::vector<int32_t> inputs = fx.read_i32("input_ids"), targets = fx.read_i32("targets");
  ASSERT_EQ(static_cast<int64_t>(inputs.size()), B * S);

  // Forward, loss and gradients.
  Activations acts;
  Gradients grads(*model);
  model_forward(*model, inputs.data(), B, S, acts, true);
  std::vector<float> want_logits = fx.read_f32("logits");
  ASSERT_EQ(static_cast<int64_t>(want_logits.size()), B * S * V);
  DSMOE_EXPECT_CLOSE("logits", acts.logits.data(), want_logits.data(), B * S * V, kTol);
  const double logits_rel = dsmoe::testing::compare(acts.logits.data(), want_logits.data(), B * S * V).rel;
  LossReport loss = model_loss_backward(*model, inputs.data(), targets.data(), B, S, acts, &grads);
  EXPECT_NEAR(loss.ce, scalar(fx, "ce_loss"), kTol * std::fabs(scalar(fx, "ce_loss")));
  EXPECT_NEAR(loss.balance, scalar(fx, "aux_loss"), kTol * std::fabs(scalar(fx, "aux_loss")) + 1e-9);
  EXPECT_NEAR(loss.total(), scalar(fx, "loss"), kTol * std::fabs(scalar(fx, "loss")));
  const double worst_grad = expect_params_close(grads.params, fx, "grad.", kTol);

  // 5 AdamW steps on the same batch, with clipping and the fixture's schedule.
  Trainer trainer(*model, AdamWOptions{meta.at("beta1"), meta.at("beta2"), meta.at("eps"), meta.at("weight_decay")},
                  meta.at("grad_clip"));
  const Schedule schedule = schedule_from_name(meta.at("schedule"));
  const int64_t steps = meta.at("steps");
  for (int64_t s = 0; s < steps; ++s) {
    const double lr = schedule_lr(schedule, meta.at("lr"), s, steps, meta.at("warmup"));
    EXPECT_NEAR(lr, scalar(fx, "step_lr", s), 1e-7 * lr) << "lr at step " << s;
    StepResult r = trainer.step(inputs.data(), targets.data(), B, S, lr);
    EXPECT_NEAR(r.loss.total(), scalar(fx, "step_loss", s), kTol * std::fabs(scalar(fx, "step_loss", s)))
        << "loss at step " << s;
    EXPECT_NEAR(r.grad_norm, scalar(fx, "step_grad_norm", s), kTol * scalar(fx, "step_grad_norm", s))
        << "grad norm at step " << s;
  }
  const double worst_final = expect_params_close(model->params, fx, "final.", kTol);
  std::printf("%s: logits rel err %.2e, worst gradient rel err %.2e, worst weight rel err after %lld steps %.2e\n",
              GetParam().c_str(), logits_rel, worst_grad, static_cast<long long>(steps), worst_final);
}

INSTANTIATE_TEST_SUITE_P(PyTorch, Fixture, ::testing::ValuesIn(fixture_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Fails loudly when the fixtures were not generated, instead of silently running zero cases.
TEST(FixtureSet, Present) {
  EXPECT_GE(fixture_names().size(), 6u) << "expected >= 6 fixture configs under " << fixture_root()
                                        << " (run tools/reference/make_fixtures.py --out DIR)";
}
