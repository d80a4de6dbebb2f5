// The training loop's guards and pieces: NaN/Inf guard (names the tensor, leaves parameters untouched, no
// checkpoint), gradient accumulation, frozen router, MoE telemetry, run config resolution.
#include <cmath>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

#include "check.h"
#include "core/error.h"
#include "expect_error.h"
#include "model/checkpoint.h"
#include "test_util.h"
#include "train/run.h"
#include "train/telemetry.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace dsmoe;
using namespace dsmoe::testing;

TEST(Guards, NonFiniteWeightStopsTheStepNamingTheTensor) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 1);
  m->weights.layers[1].expert_up[17] = std::nanf("");
  std::vector<float> before(m->params.arena.data(), m->params.arena.data() + m->params.arena.size());
  Trainer trainer(*m, AdamWOptions{}, 1.0);
  std::vector<int32_t> in = random_tokens(2 * 6, c.vocab_size, 2), tg = random_tokens(2 * 6, c.vocab_size, 3);
  // The NaN expert may not be routed to; make sure it is used by routing every token to every expert.
  m->config.num_experts_per_tok = c.n_routed_experts;
  expect_error([&] { trainer.step(in.data(), tg.data(), 2, 6, 1e-3); },
               {"step 1", "not finite", "model.layers.1.mlp.experts.{e}.up_proj.weight", "layer 1"});
  EXPECT_EQ(0, std::memcmp(before.data(), m->params.arena.data(), before.size() * 4)) << "parameters unchanged";
  EXPECT_EQ(trainer.optimizer.step, 0);
}

TEST(Guards, InfiniteGradientIsNamed) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 4);
  Gradients g(*m);
  g.weights.layers[0].wk[3] = INFINITY;
  EXPECT_NE(first_non_finite(g.params).find("model.layers.0.self_attn.k_proj.weight (layer 0)"), std::string::npos);
  g.weights.layers[0].wk[3] = 0;
  EXPECT_EQ(first_non_finite(g.params), "");
}

TEST(Guards, PoisonedRunWritesNoCheckpoint) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 5);
  m->weights.embedding[0] = INFINITY;  // every token id 0 hits it; the data below is all zeros
  const fs::path dir = fs::temp_directory_path() / ("dsmoe_poison_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  model_save(*m, (dir / "model").string());
  {
    std::vector<uint32_t> zeros(200, 0);
    FILE* f = std::fopen((dir / "tokens.bin").c_str(), "wb");
    std::fwrite(zeros.data(), 4, zeros.size(), f);
    std::fclose(f);
  }
  RunRequest req;
  req.config = resolve_run_config("", "",
                                  {{"model", (dir / "model").string()},
                                   {"data", (dir / "tokens.bin").string()},
                                   {"seq_len", "8"},
                                   {"batch", "2"},
                                   {"steps", "5"},
                                   {"checkpoint_every", "1"}});
  req.run_dir = (dir / "run").string();
  expect_error([&] { train_run(req); }, {"step 1", "not finite", "model.embed_tokens.weight"});
  EXPECT_FALSE(fs::exists(dir / "run" / "latest"));
  EXPECT_FALSE(fs::exists(dir / "run" / "checkpoints") && !fs::is_empty(dir / "run" / "checkpoints"));
  fs::remove_all(dir);
}

// Two micro-batches of 3 sequences == one batch of 6 (equal token counts: the mean of means is the mean).
TEST(Trainer, GradientAccumulationEqualsTheBigBatch) {
  ModelConfig c = tiny_config();
  c.aux_loss_alpha = 0;  // balance losses are per micro-batch statistics, not additive
  auto a = random_model(c, 6), b = random_model(c, 6);
  std::vector<int32_t> in = random_tokens(6 * 5, c.vocab_size, 7), tg = random_tokens(6 * 5, c.vocab_size, 8);
  Trainer ta(*a, AdamWOptions{}, 0.0), tb(*b, AdamWOptions{}, 0.0);
  StepResult ra = ta.step(in.data(), tg.data(), 6, 5, 1e-3);
  StepResult rb = tb.step({{in.data(), tg.data(), 3, 5}, {in.data() + 15, tg.data() + 15, 3, 5}}, 1e-3);
  EXPECT_NEAR(ra.loss.ce, rb.loss.ce, 1e-6);
  EXPECT_NEAR(ra.grad_norm, rb.grad_norm, 1e-5 * ra.grad_norm);
  DSMOE_EXPECT_CLOSE("weights after one step", b->params.arena.data(), a->params.arena.data(),
                     static_cast<int64_t>(a->params.arena.size()), 1e-5);
}

TEST(Trainer, FrozenRouterIsNotUpdated) {
  ModelConfig c = tiny_config();
  auto m = random_model(c, 9);
  std::vector<float> router(m->weights.layers[1].router,
                            m->weights.layers[1].router + c.n_routed_experts * c.hidden_size);
  std::vector<float> wq(m->weights.layers[1].wq, m->weights.layers[1].wq + c.hidden_size * c.hidden_size);
  Trainer t(*m, AdamWOptions{}, 1.0);
  t.freeze_router();
  std::vector<int32_t> in = random_tokens(12, c.vocab_size, 10), tg = random_tokens(12, c.vocab_size, 11);
  t.step(in.data(), tg.data(), 2, 6, 1e-2);
  EXPECT_EQ(0, std::memcmp(router.data(), m->weights.layers[1].router, router.size() * 4));
  EXPECT_NE(0, std::memcmp(wq.data(), m->weights.layers[1].wq, wq.size() * 4));
}

TEST(Telemetry, LoadStatistics) {
  ModelConfig c = tiny_config();
  MoeActs acts;
  const int64_t T = 4, E = c.n_routed_experts, k = 2;
  acts.probs = FloatBuffer(T * E);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e) acts.probs[t * E + e] = 1.0f / E;  // uniform: entropy log E
  // experts 0 and 1 get every token, the rest none
  for (int64_t t = 0; t < T; ++t) acts.probs[t * E] += 1e-3f, acts.probs[t * E + 1] += 1e-3f;
  acts.plan = routing_plan_build(acts.probs.data(), T, E, k, false, 0.0);
  MoeLayerStats s;
  s.add(acts);
  EXPECT_EQ(s.tokens_per_expert[0], 4);
  EXPECT_EQ(s.dead_experts(), E - 2);
  EXPECT_NEAR(s.max_vio(), (4.0 - 8.0 / E) / (8.0 / E), 1e-9);
  EXPECT_NEAR(s.router_entropy(), std::log(static_cast<double>(E)), 1e-2);
  EXPECT_EQ(s.dropped_pct(), 0.0);
  EXPECT_EQ(s.to_json(7)["type"], "moe");
}

TEST(RunConfig, PresetFileOverrideOrderAndErrors) {
  RunConfig c = resolve_run_config("tiny", "", {{"lr", "0.5"}});
  EXPECT_EQ(c.model, "tiny");
  EXPECT_DOUBLE_EQ(c.lr, 0.5);
  expect_error([] { resolve_run_config("tiny", "", {{"learning_rate", "1"}}); }, {"unknown run config key"});
  expect_error([] { resolve_run_config("tiny", "", {{"seq-len", "1.5"}}); }, {"seq-len", "integer"});
  expect_error([] { resolve_run_config("tiny", "", {{"schedule", "linear"}}); }, {"schedule"});
  expect_error([] { resolve_run_config("nope", "", {}); }, {"unknown preset"});
  for (const std::string& name : run_preset_names()) EXPECT_NO_THROW(resolve_run_config(name, "", {}));
}
